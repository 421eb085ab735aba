-- Afterimage schema, version 1: what the providers sent, what it means, and every output file's fate.

-- Every webhook delivery exactly as received, before anything is interpreted, so that nothing a provider
-- sent is ever lost (even a signed body we cannot parse). Deduplicated on the provider's webhook id.
CREATE TABLE deliveries (
    id                bigserial PRIMARY KEY,
    provider          text        NOT NULL,
    webhook_id        text        NOT NULL,
    webhook_timestamp timestamptz,
    source            text        NOT NULL DEFAULT 'webhook',   -- webhook | reconcile
    body              bytea       NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    outcome           text        NOT NULL DEFAULT 'accepted',  -- accepted | unparseable
    error             text,
    CONSTRAINT deliveries_provider_webhook_id_key UNIQUE (provider, webhook_id)
);

-- One row per provider prediction; fields only fill in, and a terminal status is never replaced.
CREATE TABLE predictions (
    provider      text        NOT NULL,
    id            text        NOT NULL,
    status        text        NOT NULL,
    model         text,
    version       text,
    input         jsonb,
    output        jsonb,
    error         text,
    metrics       jsonb,
    created_at    timestamptz,
    started_at    timestamptz,
    completed_at  timestamptz,
    data_removed  boolean     NOT NULL DEFAULT false,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT predictions_pkey PRIMARY KEY (provider, id)
);

-- One row per output file, found at a JSON pointer inside the prediction's output. The queue lives here:
-- claims take `pending` rows earliest deadline first; a claim sets a lease and a fresh token that guards
-- every later write of that job.
CREATE TABLE assets (
    id               bigserial   PRIMARY KEY,
    provider         text        NOT NULL,
    prediction_id    text        NOT NULL,
    pointer          text        NOT NULL,
    output_index     integer     NOT NULL,
    source_url       text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'in_flight', 'stored', 'failed', 'expired')),
    deadline         timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz,
    claim_token      uuid,
    claimed_by       text,
    spool_path       text,
    spool_sha256     text,
    spool_size       bigint,
    storage_key      text,
    size_bytes       bigint,
    sha256           text,
    content_type     text,
    etag             text,
    stored_at        timestamptz,
    last_error       text,
    failure_reason   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assets_provider_prediction_pointer_key UNIQUE (provider, prediction_id, pointer),
    CONSTRAINT assets_prediction_fkey FOREIGN KEY (provider, prediction_id) REFERENCES predictions (provider, id)
);

CREATE INDEX assets_claimable_idx ON assets (deadline, next_attempt_at) WHERE state = 'pending';
CREATE INDEX assets_leased_idx ON assets (lease_expires_at) WHERE state = 'in_flight';
CREATE INDEX assets_state_id_idx ON assets (state, id);
