"""Routers and cascades (:class:`Cascade`, :class:`ThresholdRouter`) and failure handling (:class:`Fallback`)."""
