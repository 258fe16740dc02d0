"""Exported models that ship with refinery (see MODEL_CARD.md)."""
