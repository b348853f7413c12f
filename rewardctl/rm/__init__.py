"""Reward models: scoring (prompt, response) pairs with trained models, and training small ones."""
