"""Card-transaction fraud features, written in Python.

The same models load the YAML views in ``spend.yaml`` beside this file.
"""

from freshet import Aggregation, Entity, FeatureView, HoppingWindow, SlidingWindow, Source

card = Entity(name="card", join_key="card_id", description="A payment card")

transactions = Source(
    name="transactions",
    topic="transactions",
    partitions=4,
    key="card_id",
    timestamp="ts",
    schema={"card_id": "str", "amount": "float", "merchant": "str", "country": "str", "ts": "int"},
    description="Card authorisations, one JSON event per transaction",
)

card_spend_1h = FeatureView(
    name="card_spend_1h",
    version=2,  # v2: read as of the request time (as_of="request")
    source=transactions,
    entity=card,
    window=HoppingWindow(size="1h", step="5m"),
    grace="30s",
    emit="final",
    as_of="request",  # the latest hour ended by the read's instant, whether or not the card paid since
    ttl="2h",
    aggregations=[
        Aggregation(function="count", name="txn_count_1h"),
        Aggregation(function="sum", column="amount", name="amount_sum_1h"),
    ],
    owner="fraud-ml@example.com",
    description="Spend per card over the last hour, refreshed every 5 minutes",
    tags={"team": "fraud"},
)

card_activity_10m = FeatureView(
    name="card_activity_10m",
    version=2,  # v2: read as of the request time (as_of="request")
    source=transactions,
    entity=card,
    window=SlidingWindow(size="10m"),
    grace="30s",
    emit="current",
    as_of="request",  # the 10 minutes up to the read's instant: a card gone quiet reads 0
    ttl="30m",
    aggregations=[
        Aggregation(function="count", name="txn_count_10m"),
        Aggregation(function="count_distinct", column="merchant", name="distinct_merchants_10m"),
    ],
    owner="fraud-ml@example.com",
    description="Transactions and distinct merchants per card in the 10 minutes up to the read's instant",
    tags={"team": "fraud"},
)
