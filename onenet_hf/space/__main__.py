"""`python -m onenet_hf.space`: the Space from a checkout or an install, as `spaces/app.py` runs it."""

from .launch import main

main()
