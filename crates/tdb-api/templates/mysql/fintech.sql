CREATE TABLE users (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    email varchar(255) NOT NULL UNIQUE,
    kyc_status varchar(20) NOT NULL DEFAULT 'pending' CHECK (kyc_status IN ('pending', 'verified', 'rejected')),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE accounts (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    user_id bigint NOT NULL,
    iban varchar(34) UNIQUE,
    currency char(3) NOT NULL,
    balance_minor bigint NOT NULL DEFAULT 0,
    status varchar(20) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'frozen', 'closed')),
    opened_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users (id)
);
CREATE TABLE transactions (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    account_id bigint NOT NULL,
    counterparty_account_id bigint,
    amount_minor bigint NOT NULL CHECK (amount_minor <> 0),
    currency char(3) NOT NULL,
    kind varchar(20) NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer', 'fee')),
    reference varchar(140),
    booked_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (account_id) REFERENCES accounts (id),
    FOREIGN KEY (counterparty_account_id) REFERENCES accounts (id)
);
CREATE TABLE ledger_entries (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    transaction_id bigint NOT NULL,
    account_id bigint NOT NULL,
    debit_minor bigint NOT NULL DEFAULT 0 CHECK (debit_minor >= 0),
    credit_minor bigint NOT NULL DEFAULT 0 CHECK (credit_minor >= 0),
    CHECK ((debit_minor = 0) <> (credit_minor = 0)),
    FOREIGN KEY (transaction_id) REFERENCES transactions (id),
    FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE TABLE cards (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    account_id bigint NOT NULL,
    last4 char(4) NOT NULL CHECK (last4 REGEXP '^[0-9]{4}$'),
    expires_on date NOT NULL,
    blocked boolean NOT NULL DEFAULT false,
    FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE INDEX transactions_account_time_idx ON transactions (account_id, booked_at DESC);
