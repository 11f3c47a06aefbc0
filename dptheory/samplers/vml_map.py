"""VML-MAP placeholder (being written)."""


def vml_map(*args, **kwargs):  # pragma: no cover
    raise NotImplementedError("vml_map is being written")
