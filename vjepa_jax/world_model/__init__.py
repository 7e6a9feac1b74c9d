"""The world model: planners over an action-conditioned predictor's energy (planners.py)."""
