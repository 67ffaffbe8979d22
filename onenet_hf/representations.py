"""The vectors a gallery keeps of each image, as `OneNetModel.get_gallery_embeds` and the exported gallery encoder
give them: one name and dtype each, shared by the model's export, the index and its builds (torch-free)."""

from __future__ import annotations

import numpy as np

ARRAYS = ("image_embeds", "pooled_features", "retrieval_embeds", "tag_embeds")
# Each array's dtype as builds write it; its rows are the shard's size, its width the representation size
# (image_embeds) or the same in every shard (the others).
ARRAY_DTYPES = {name: np.dtype(np.float16 if name == "pooled_features" else np.float32) for name in ARRAYS}

__all__ = ["ARRAYS", "ARRAY_DTYPES"]
