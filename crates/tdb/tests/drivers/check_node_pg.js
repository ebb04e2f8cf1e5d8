// proxy_drivers.rs with node-postgres (pg): two Clients, transactions with BEGIN/COMMIT, the
// driver's named statements (prepared once per connection: the same name in both clients for
// two texts), then a Pool.
const { Client, Pool } = require('pg');
const {
  TARGET, MOMENT, NUMBER, BYTES, ARRAY, say, check, expectError, show,
} = require('./driverlib.js');

const config = {
  host: TARGET.host, port: TARGET.port, user: TARGET.user, password: TARGET.password,
  database: TARGET.database,
};
const row = (r) => r.rows[0];
const rowShow = (r) => r.rows.map((x) => x.map(show).join(' ')).join(' ; ');

async function main() {
  const a = new Client(config);
  const b = new Client(config);
  await a.connect();
  await b.connect();
  await check('connect', async () => row(await a.query('SHOW server_version')).server_version);
  await check('cleanup', async () => (await a.query('DELETE FROM items')) && 'done');
  await check('simple', async () => rowShow(await a.query({ text: "SELECT 1, 'two'", rowMode: 'array' })));
  await check('simple multi', async () => (await a.query('SELECT 1; SELECT 2')).map((r) => r.rows[0]['?column?']));
  await check('params', async () => rowShow(await a.query({
    text: "SELECT $1::int + 1, $2::text || '!', $3::timestamptz + interval '1 hour', $4::numeric * 2, "
      + '$5::bytea, $6::int IS NULL, $7::int[] || 4',
    values: [41, 'héllo', MOMENT, NUMBER, BYTES, null, ARRAY],
    rowMode: 'array',
  })));
  await check('cached', async () => {
    const seen = [];
    for (let i = 0; i < 7; i += 1) {
      seen.push(row(await a.query({ name: 'times-ten', text: 'SELECT $1::int * 10 AS v', values: [i] })).v);
    }
    return seen;
  });
  const count = async (c) => Number(row(await c.query('SELECT count(*) AS n FROM items')).n);
  await check('commit', async () => {
    await a.query('BEGIN');
    await a.query('INSERT INTO items VALUES ($1), ($2)', [1, 2]);
    await a.query('COMMIT');
    return `${await count(b)} rows seen by the other`;
  });
  await check('rollback', async () => {
    await a.query('BEGIN');
    await a.query('INSERT INTO items VALUES (3)');
    const inside = await count(a);
    await a.query('ROLLBACK');
    return `${inside} inside, ${await count(a)} after, ${await count(b)} seen by the other`;
  });
  await check('error', () => expectError(() => a.query('SELECT 1 / $1::int', [0])));
  await check('after error', async () => row(await a.query('SELECT 2 AS v')).v);
  await check('error in transaction', async () => {
    await b.query('BEGIN');
    const first = await expectError(() => b.query('SELECT 1 / 0'));
    const following = await expectError(() => b.query('SELECT 1'));
    await b.query('ROLLBACK');
    return `${first} | ${following} | then ${row(await b.query('SELECT 4 AS v')).v}`;
  });
  await check('set timezone', async () => (await a.query("SET TIME ZONE 'Asia/Tokyo'")).command);
  const zone = async (c) => row(await c.query('SHOW TimeZone')).TimeZone;
  await check('timezone', () => zone(a));
  const rendered = async (c) => rowShow(await c.query({
    text: 'SELECT $1::timestamptz::text, $1::timestamptz', values: [MOMENT], rowMode: 'array',
  }));
  await check('timezone rendered', () => rendered(a));
  for (const i of [1, 2, 3]) {
    if (i === 2) await check('b sets', async () => (await b.query("SET TIME ZONE 'America/New_York'")).command);
    await check(`interleave ${i}`, async () => `a=${await zone(a)} b=${await zone(b)}`);
  }
  await check('interleave statements', async () => {
    const seen = [];
    for (let i = 0; i < 5; i += 1) {
      seen.push(row(await a.query({ name: 'mine', text: 'SELECT $1::int + 100 AS v', values: [i] })).v);
      seen.push(row(await b.query({ name: 'mine', text: 'SELECT $1::int - 100 AS v', values: [i] })).v);
    }
    return seen;
  });
  await check('interleave rendered a', () => rendered(a));
  await check('interleave rendered b', () => rendered(b));
  await a.end();
  await b.end();
  say('close', 'ok');
  const pool = new Pool({ ...config, max: 2 });
  await check('pool', async () => {
    const both = await Promise.all([1, 2, 3, 4].map((i) => pool.query('SELECT $1::int AS v', [i])));
    return both.map((r) => r.rows[0].v);
  });
  await check('after close', async () => row(await pool.query('SHOW TimeZone')).TimeZone);
  await pool.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
