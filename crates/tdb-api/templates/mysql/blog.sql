CREATE TABLE authors (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    handle varchar(64) NOT NULL UNIQUE CHECK (handle REGEXP '^[a-z0-9_]+$'),
    display_name varchar(255) NOT NULL,
    bio text,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE posts (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    author_id bigint NOT NULL,
    slug varchar(200) NOT NULL UNIQUE,
    title varchar(255) NOT NULL,
    body mediumtext NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
    published_at timestamp NULL,
    updated_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    FOREIGN KEY (author_id) REFERENCES authors (id)
);
CREATE TABLE tags (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    name varchar(64) NOT NULL UNIQUE
);
CREATE TABLE post_tags (
    post_id bigint NOT NULL,
    tag_id bigint NOT NULL,
    PRIMARY KEY (post_id, tag_id),
    FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    FOREIGN KEY (tag_id) REFERENCES tags (id) ON DELETE CASCADE
);
CREATE TABLE comments (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    post_id bigint NOT NULL,
    parent_id bigint,
    author_name varchar(120) NOT NULL,
    body text NOT NULL,
    approved boolean NOT NULL DEFAULT false,
    created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE,
    FOREIGN KEY (parent_id) REFERENCES comments (id) ON DELETE CASCADE
);
CREATE INDEX posts_published_idx ON posts (status, published_at DESC);
CREATE INDEX comments_post_idx ON comments (post_id, created_at);
