"""Datasets and synthetic raw data for training and tests."""
