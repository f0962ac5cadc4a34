"""The kernel side of Jupyter: the live view widget (``VmView``), its frame stream, and the
``%petri`` magics. Imported only when used (IPython and anywidget are not needed to drive a VM)."""
