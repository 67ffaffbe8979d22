"""The Gradio Space: what it serves, its UI (wiring only), its command line, and requests answered in batches."""
