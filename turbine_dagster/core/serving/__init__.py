"""Batch scoring of landed cases and champion/challenger comparison."""
