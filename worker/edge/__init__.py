"""The edge side of the loop: the detector that answers with boxes and mines hard examples, and
the edge agent (download, local inference, upload queue, hot swap). Uses ``worker.ml`` only:
no Django, no TensorFlow, so it runs on a device and inside the portal's web process alike."""
