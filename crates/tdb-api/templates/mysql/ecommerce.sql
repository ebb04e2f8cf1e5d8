CREATE TABLE customers (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    email varchar(255) NOT NULL UNIQUE,
    name varchar(255) NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE addresses (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    customer_id bigint NOT NULL,
    line1 varchar(255) NOT NULL,
    line2 varchar(255),
    city varchar(120) NOT NULL,
    postal_code varchar(20) NOT NULL,
    country char(2) NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE
);
CREATE TABLE products (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    sku varchar(64) NOT NULL UNIQUE,
    name varchar(255) NOT NULL,
    description text,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    stock int NOT NULL DEFAULT 0 CHECK (stock >= 0),
    active boolean NOT NULL DEFAULT true
);
CREATE TABLE orders (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    customer_id bigint NOT NULL,
    shipping_address_id bigint,
    status varchar(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'canceled')),
    total_cents bigint NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    placed_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (customer_id) REFERENCES customers (id),
    FOREIGN KEY (shipping_address_id) REFERENCES addresses (id)
);
CREATE TABLE order_items (
    order_id bigint NOT NULL,
    product_id bigint NOT NULL,
    quantity int NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id),
    FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,
    FOREIGN KEY (product_id) REFERENCES products (id)
);
CREATE TABLE payments (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    order_id bigint NOT NULL,
    provider varchar(64) NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    succeeded boolean NOT NULL,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (order_id) REFERENCES orders (id)
);
CREATE INDEX orders_customer_idx ON orders (customer_id, placed_at DESC);
CREATE INDEX products_active_name_idx ON products (active, name);
