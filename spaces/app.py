"""OneNet Space: the UI lives in `onenet_hf.space.app` (so `onenet build-space` can ship it); this runs it."""

from onenet_hf.space.launch import main

if __name__ == "__main__":
    main()
