"""Models: the video ViT encoder (vit.py) and the mask-token predictor (predictor.py)."""
