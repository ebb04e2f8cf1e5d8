CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    kyc_status text NOT NULL DEFAULT 'pending' CHECK (kyc_status IN ('pending', 'verified', 'rejected')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id),
    iban text UNIQUE,
    currency char(3) NOT NULL,
    balance_minor bigint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'frozen', 'closed')),
    opened_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE transactions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    counterparty_account_id bigint REFERENCES accounts (id),
    amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
    currency char(3) NOT NULL,
    kind text NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'fee')),
    reference text,
    booked_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ledger_entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id bigint NOT NULL REFERENCES transactions (id),
    account_id bigint NOT NULL REFERENCES accounts (id),
    debit_minor bigint NOT NULL DEFAULT 0 CHECK (debit_minor >= 0),
    credit_minor bigint NOT NULL DEFAULT 0 CHECK (credit_minor >= 0),
    CHECK ((debit_minor = 0) <> (credit_minor = 0))
);
CREATE TABLE cards (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    last4 char(4) NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    expires_on date NOT NULL,
    blocked boolean NOT NULL DEFAULT false
);
CREATE INDEX accounts_user_idx ON accounts (user_id);
CREATE INDEX transactions_account_time_idx ON transactions (account_id, booked_at DESC);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id);
CREATE INDEX cards_account_idx ON cards (account_id);
