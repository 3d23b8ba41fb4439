"""ilportal's ML core: runs without Django (Celery workers, edge agent, benchmarks).

Light modules (registry, config, miners, metrics, synthetic, data) import without TensorFlow;
``fpn`` imports TensorFlow only when a network is built or loaded, ``litert`` only needs
``ai_edge_litert`` on the edge.
"""
