"""Definitions of the training code location: data, models, evaluation, champion."""
