-- Two services' databases on the old PostgreSQL, with rows (run by tests/test_adopt_lab.py).
\connect n8n
CREATE TABLE workflow_entity (id serial PRIMARY KEY, name text NOT NULL, active boolean NOT NULL DEFAULT false);
INSERT INTO workflow_entity (name, active) SELECT 'workflow ' || g, g % 2 = 0 FROM generate_series(1, 12) g;
CREATE TABLE execution_entity (id serial PRIMARY KEY, workflow_id int REFERENCES workflow_entity (id), finished boolean);
INSERT INTO execution_entity (workflow_id, finished) SELECT 1 + g % 12, true FROM generate_series(1, 250) g;
\connect ticketbot
CREATE TABLE tickets (id serial PRIMARY KEY, guild text NOT NULL, subject text NOT NULL, opened_at timestamptz DEFAULT now());
INSERT INTO tickets (guild, subject) SELECT 'rig-city', 'ticket ' || g FROM generate_series(1, 37) g;
CREATE TABLE settings (key text PRIMARY KEY, value text);
INSERT INTO settings VALUES ('prefix', '!'), ('log_channel', 'tickets-log');
