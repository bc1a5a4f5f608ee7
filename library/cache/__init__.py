"""Latent and text-encoder output caches as safetensors files that record what they were made from."""
