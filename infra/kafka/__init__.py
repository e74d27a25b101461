"""The local Apache Kafka broker (KRaft, no Docker): fetched with Maven, run as a plain JVM.

`broker.py` is the API used by `edgeml broker` and by the test session fixture.
"""
