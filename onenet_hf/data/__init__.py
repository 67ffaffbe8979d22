"""Datasets (Flickr8k, COCO), the backbone feature cache training and evaluation read, and the example photos."""
