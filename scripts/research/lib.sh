# Shared by the research scripts (sourced, not run).

# Creates an integration named $3 with an enabled inbound use case `customer-sync` through the
# API at $1 with token $2, and prints the integration's id.
create_integration() {
  local erp=$1 token=$2 name=$3 integration
  integration=$(curl -sf -X POST "$erp/v1/integrations" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d "{\"name\": \"$name\"}" | jq -r .id) || return 1
  curl -sf -X POST "$erp/v1/integrations/$integration/use-cases" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name": "Customer Sync", "slug": "customer-sync", "type": "inbound", "enabled": true,
         "configuration": {"entities": [{"entity_schema": "contact", "unique_ids": ["customer_number"],
           "fields": [{"attribute": "customer_number", "field": "customerId"}]}]}}' >/dev/null \
    || return 1
  echo "$integration"
}
