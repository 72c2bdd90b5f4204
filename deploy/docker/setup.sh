#!/bin/sh
# setup.sh — one-shot set-up of a compose deployment (the `setup` service):
# loads the city data into Redis and makes the CURVE certificates the
# dispatchers and adapters use, once, into the `certs` volume, registering
# each adapter's public key for its department. Safe to run again: existing
# certificates are kept, loads replace the stored versions.
set -eu
CONFIG=${CIVICBUS_CONFIG_DIR:-/etc/civicbus}
CERTS=${CIVICBUS_CERTS_DIR:-/certs}

civicbus grids load "$CONFIG/grids.geojson"
civicbus catalog load "$CONFIG/catalog.json"
civicbus calendar load "$CONFIG/calendar-cn-2026.json"
civicbus sla load "$CONFIG/sla.json"

for name in dispatcher adapter-police adapter-urban adapter-civil; do
    [ -e "$CERTS/$name.cert_secret" ] || civicbus certs new "$name" --out "$CERTS"
done
for dept in police urban civil; do
    civicbus adapters register "$dept" "$CERTS/adapter-$dept.cert" || true
done
civicbus status
