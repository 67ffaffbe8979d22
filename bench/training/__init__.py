"""Training: the spread over seeds and where SCST moves the decoder."""
