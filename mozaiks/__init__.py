"""mozaiks: the multi-agent chat workflow runtime on Ray.

The design card's folders (``actors``, ``serve_app``, ``broker``, ``capabilities``, ``workflows``)
stay at the top level; everything else the distribution ships lives under this package so an
install adds no generic top-level names that a host application could shadow.
"""
