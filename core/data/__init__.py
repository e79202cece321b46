"""Datasets: where images come from (sample, flowers download, folders, zips), decoding them once into uint8
tensors, and splitting them into train/val/test."""
