"""Every GraphQL document popsync sends to Shopify's Admin API, in one place.

The tests validate each of them against Shopify's official 2026-10 schema, and
``scripts/trim_admin_schema.py`` keeps exactly the part of that schema these documents use for the
development store. A new document goes here and into ``ALL_DOCUMENTS``, or the development store rejects it.

Reads use ``defaultEmailAddress`` and ``defaultPhoneNumber`` (the flat ``email``/``phone`` fields and
``defaultPhoneNumber.marketingState`` are deprecated in 2026-10). Writes never send ``tags`` on update and
send ``addresses`` only on create or to a customer without one: both replace the whole list.
"""

from __future__ import annotations

from textwrap import indent

# The customer as popsync reads it, shared by every document that returns one. The aliases are what
# ``app.platforms.shopify.parse_customer`` reads. The bare selection is kept apart so the bulk export (whose
# query is a string inside a mutation) selects exactly the same fields without relying on fragments there.
CUSTOMER_FIELDS = """
  id
  firstName
  lastName
  tags
  updatedAt
  defaultEmailAddress {
    emailAddress
    marketingState
  }
  defaultPhoneNumber {
    phoneNumber
    smsMarketingConsent {
      state
    }
  }
  defaultAddress {
    countryCodeV2
  }
  birthDate: metafield(namespace: "facts", key: "birth_date") {
    value
  }
  gender: metafield(namespace: "$app", key: "gender") {
    value
  }
"""

CUSTOMER_FRAGMENT = "\nfragment PopsyncCustomer on Customer {" + CUSTOMER_FIELDS + "}\n"

CUSTOMER_BY_EMAIL = (
    """
query PopsyncCustomerByEmail($email: String!) {
  customer: customerByIdentifier(identifier: {emailAddress: $email}) {
    ...PopsyncCustomer
  }
}
"""
    + CUSTOMER_FRAGMENT
)

CUSTOMER_BY_PHONE = (
    """
query PopsyncCustomerByPhone($phone: String!) {
  customer: customerByIdentifier(identifier: {phoneNumber: $phone}) {
    ...PopsyncCustomer
  }
}
"""
    + CUSTOMER_FRAGMENT
)

CUSTOMER_BY_ID = (
    """
query PopsyncCustomerById($id: ID!) {
  customer(id: $id) {
    ...PopsyncCustomer
  }
}
"""
    + CUSTOMER_FRAGMENT
)

CUSTOMER_CREATE = (
    """
mutation PopsyncCustomerCreate($input: CustomerInput!) {
  customerCreate(input: $input) {
    customer {
      ...PopsyncCustomer
    }
    userErrors {
      field
      message
    }
  }
}
"""
    + CUSTOMER_FRAGMENT
)

CUSTOMER_UPDATE = (
    """
mutation PopsyncCustomerUpdate($input: CustomerInput!) {
  customerUpdate(input: $input) {
    customer {
      ...PopsyncCustomer
    }
    userErrors {
      field
      message
    }
  }
}
"""
    + CUSTOMER_FRAGMENT
)

TAGS_ADD = (
    """
mutation PopsyncTagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node {
      ... on Customer {
        ...PopsyncCustomer
      }
    }
    userErrors {
      field
      message
    }
  }
}
"""
    + CUSTOMER_FRAGMENT
)

EMAIL_CONSENT_UPDATE = (
    """
mutation PopsyncEmailConsentUpdate($input: CustomerEmailMarketingConsentUpdateInput!) {
  customerEmailMarketingConsentUpdate(input: $input) {
    customer {
      ...PopsyncCustomer
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""
    + CUSTOMER_FRAGMENT
)

SMS_CONSENT_UPDATE = (
    """
mutation PopsyncSmsConsentUpdate($input: CustomerSmsMarketingConsentUpdateInput!) {
  customerSmsMarketingConsentUpdate(input: $input) {
    customer {
      ...PopsyncCustomer
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""
    + CUSTOMER_FRAGMENT
)

# ``facts`` is reserved for Shopify's standard definitions: a birthday can be written only once the
# standard ``facts.birth_date`` definition is enabled on the shop (once per shop; enabling it again
# answers a TAKEN user error).
BIRTH_DATE_DEFINITION_ENABLE = """
mutation PopsyncBirthDateDefinitionEnable {
  standardMetafieldDefinitionEnable(ownerType: CUSTOMER, namespace: "facts", key: "birth_date", pin: true) {
    createdDefinition {
      id
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""

# Customers a page at a time, least recently updated first, for the reconciliation and small backfills.
# ``first`` is a literal so the cost estimate sees it: Shopify refuses any query whose requested cost passes
# 1,000 points before running it, and each customer here costs 7 (itself and six objects), so 250 a page
# would ask for about 1,750. 100 asks for about 800, leaving room in a standard shop's bucket.
CUSTOMERS_PAGE_SIZE = 100
CUSTOMERS_PAGE = (
    """
query PopsyncCustomersPage($after: String, $query: String) {
  customers(first: PAGE_SIZE, after: $after, sortKey: UPDATED_AT, query: $query) {
    nodes {
      ...PopsyncCustomer
    }
    pageInfo {
      hasNextPage
      endCursor
    }
  }
}
""".replace("PAGE_SIZE", str(CUSTOMERS_PAGE_SIZE))
    + CUSTOMER_FRAGMENT
)

# The query a bulk export runs (a string argument of ``bulkOperationRunQuery``, validated against the schema
# like the documents): every customer, one JSONL line each. No nested connection, so no ``__parentId`` lines.
BULK_CUSTOMERS_QUERY = (
    """
query PopsyncBulkCustomers {
  customers {
    edges {
      node {"""
    + indent(CUSTOMER_FIELDS, "      ")
    + """      }
    }
  }
}
"""
)

# ``groupObjects: false``: grouping is slower and more likely to time out, and the export has no children.
BULK_CUSTOMERS_RUN = """
mutation PopsyncBulkCustomersRun($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: false) {
    bulkOperation {
      ...PopsyncBulkOperation
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""

BULK_OPERATION_FRAGMENT = """
fragment PopsyncBulkOperation on BulkOperation {
  id
  status
  errorCode
  objectCount
  url
}
"""

# ``bulkOperation(id:)``, not the deprecated ``currentBulkOperation`` (which only knows the latest one).
BULK_OPERATION = (
    """
query PopsyncBulkOperation($id: ID!) {
  bulkOperation(id: $id) {
    ...PopsyncBulkOperation
  }
}
"""
    + BULK_OPERATION_FRAGMENT
)

BULK_CUSTOMERS_RUN = BULK_CUSTOMERS_RUN + BULK_OPERATION_FRAGMENT

# The live theme's settings, where Shopify records which app embeds are switched on (needs read_themes).
LIVE_THEME_SETTINGS = """
query PopsyncLiveThemeSettings {
  themes(first: 1, roles: [MAIN]) {
    nodes {
      id
      files(filenames: ["config/settings_data.json"], first: 1) {
        nodes {
          filename
          body {
            ... on OnlineStoreThemeFileBodyText {
              content
            }
          }
        }
      }
    }
  }
}
"""

ALL_DOCUMENTS: tuple[tuple[str, str], ...] = (
    ("CUSTOMER_BY_EMAIL", CUSTOMER_BY_EMAIL),
    ("CUSTOMER_BY_PHONE", CUSTOMER_BY_PHONE),
    ("CUSTOMER_BY_ID", CUSTOMER_BY_ID),
    ("CUSTOMER_CREATE", CUSTOMER_CREATE),
    ("CUSTOMER_UPDATE", CUSTOMER_UPDATE),
    ("TAGS_ADD", TAGS_ADD),
    ("EMAIL_CONSENT_UPDATE", EMAIL_CONSENT_UPDATE),
    ("SMS_CONSENT_UPDATE", SMS_CONSENT_UPDATE),
    ("BIRTH_DATE_DEFINITION_ENABLE", BIRTH_DATE_DEFINITION_ENABLE),
    ("CUSTOMERS_PAGE", CUSTOMERS_PAGE),
    ("BULK_CUSTOMERS_QUERY", BULK_CUSTOMERS_QUERY),
    ("BULK_CUSTOMERS_RUN", BULK_CUSTOMERS_RUN),
    ("BULK_OPERATION", BULK_OPERATION),
    ("LIVE_THEME_SETTINGS", LIVE_THEME_SETTINGS),
)
