"""The live view's built front end (``tools/build-widget.sh`` makes it from the top-level ``widgets/``)."""
