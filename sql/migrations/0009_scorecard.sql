-- Schema version 9: the advisor scorecard (issue 13). Every decision row says whether its advisor acted or
-- only decided in the shadow (no order, no model call), and whether the prompt carried the reflection
-- summary; rows written before were all acting, without reflection. decision_scores holds each decision's
-- forward return at +1 h, +4 h and +24 h once the hourly candles of that time are cached
-- (tradebot.scorecard.score defines the price and the hit), written once: a rescore changes nothing.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'acting'
    CHECK (role IN ('acting', 'shadow'));
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS reflection boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS decisions_created_at_idx ON decisions (created_at);

CREATE TABLE IF NOT EXISTS decision_scores (
    decision_id    bigint NOT NULL,  -- decisions.id (no foreign key: see tradebot/store/scores.py)
    horizon_h      smallint NOT NULL CHECK (horizon_h > 0),
    price          numeric NOT NULL CHECK (price > 0),  -- the price at the horizon
    forward_return numeric NOT NULL,
    hit            boolean NOT NULL,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (decision_id, horizon_h)
);

INSERT INTO schema_version (version, description) VALUES (9, 'advisor scorecard') ON CONFLICT (version) DO NOTHING;
