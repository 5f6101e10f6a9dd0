"""The files of the mirror: the blob store and the simple index."""
