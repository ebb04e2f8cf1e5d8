CREATE TABLE organizations (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    name varchar(255) NOT NULL,
    slug varchar(100) NOT NULL UNIQUE CHECK (slug REGEXP '^[a-z0-9-]+$'),
    plan varchar(20) NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'team', 'enterprise')),
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE users (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    email varchar(255) NOT NULL UNIQUE,
    full_name varchar(255),
    last_login_at timestamp NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE memberships (
    organization_id bigint NOT NULL,
    user_id bigint NOT NULL,
    role varchar(20) NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (organization_id, user_id),
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE subscriptions (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    organization_id bigint NOT NULL,
    status varchar(20) NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    seats int NOT NULL DEFAULT 1 CHECK (seats > 0),
    current_period_end timestamp NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
);
CREATE TABLE invoices (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    subscription_id bigint NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency char(3) NOT NULL DEFAULT 'EUR',
    issued_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    paid_at timestamp NULL,
    FOREIGN KEY (subscription_id) REFERENCES subscriptions (id)
);
CREATE TABLE audit_events (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    organization_id bigint NOT NULL,
    actor_id bigint,
    action varchar(100) NOT NULL,
    payload json NOT NULL,
    occurred_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE,
    FOREIGN KEY (actor_id) REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX audit_events_org_time_idx ON audit_events (organization_id, occurred_at DESC);
