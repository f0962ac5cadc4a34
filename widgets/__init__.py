"""Front-end assets of the live view (installed as ``petri_nb.widgets``)."""
