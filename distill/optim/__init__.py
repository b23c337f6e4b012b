"""Optimizers beyond torch's: Muon on hidden matrices with AdamW on the rest, as one optimizer."""

from distill.optim.muon import MuonAdamW, newton_schulz, split_for_muon

__all__ = ["MuonAdamW", "newton_schulz", "split_for_muon"]
