"""refinery: clean large image datasets without PyTorch at runtime."""

__version__ = "0.1.0"

# The name on the package index ("refinery" there is another project, a game map extractor);
# the package imported and the command stay `refinery`.
DISTRIBUTION = "image-refinery"


def install_hint(extra: str) -> str:
    """How to add an extra (e.g. "serve") to an install, as an error message says it."""
    return f"pip install '{DISTRIBUTION}[{extra}]' (from a checkout: pip install '.[{extra}]')"
