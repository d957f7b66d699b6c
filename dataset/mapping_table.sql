-- The customer's email-to-mi_u mapping table, in their own PostgreSQL database.
-- One row per (email, mi_u) pair: an email may map to several mi_u.
-- email and mi_u are nullable because Fides erases a row by masking those columns
-- (after Movable Ink has confirmed the deletion; see movable_ink_mapping_dataset.yml).
CREATE TABLE IF NOT EXISTS movable_ink_user_map (
    id         bigserial PRIMARY KEY,
    email      text,
    mi_u       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS movable_ink_user_map_email ON movable_ink_user_map (email);
