#!/bin/sh
# One-shot topic setup for the compose stack (runs in the apache/kafka image, busybox sh).
# Idempotent: re-running `docker compose up` finds the topics and leaves them alone.
set -eu

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
TOPICS_BIN=/opt/kafka/bin/kafka-topics.sh

create() {
    # $1 topic, $2 partitions, $3 retention in ms
    "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$1" --partitions "$2" --replication-factor 1 \
        --config "retention.ms=$3"
    echo "topic $1 ready"
}

# Samples: a few partitions (a producer that keys messages by series keeps each series in order);
# the replayer loops forever, so keep only six hours.
create spikewatch.metrics 3 21600000
# Change events are rare and small: one partition keeps them in order; a week of history.
create spikewatch.changes 1 604800000
# Rejected messages with their reason, for a human to look at: a week.
create spikewatch.dlq 1 604800000
# Alert transitions, keyed by alert id (an alert's firing and resolution stay in order on one
# partition): three partitions, a week.
create spikewatch.alerts 3 604800000

"$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --list
