-- Digest signing keys: one current key per region (valid_to NULL), old keys kept for validation.
CREATE TABLE signing_keys (
    id                      BIGSERIAL PRIMARY KEY,
    region                  TEXT NOT NULL,
    -- PKCS#1 RSAPublicKey DER.
    public_key              BYTEA NOT NULL,
    fingerprint             TEXT NOT NULL UNIQUE,
    -- PKCS#8 private key, AES-256-GCM under the deployment's master key.
    private_key_ciphertext  BYTEA NOT NULL,
    valid_from              TIMESTAMPTZ NOT NULL DEFAULT now(),
    valid_to                TIMESTAMPTZ
);
CREATE UNIQUE INDEX signing_keys_one_current_per_region ON signing_keys (region) WHERE valid_to IS NULL;
