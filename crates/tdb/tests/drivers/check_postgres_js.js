// proxy_drivers.rs with postgres.js (the npm package `postgres`): two instances of one
// connection each, tagged-template queries, which it prepares under names of its own (the same
// names in both), transactions with sql.begin().
const postgres = require('postgres');
const {
  TARGET, MOMENT, NUMBER, BYTES, ARRAY, say, check, expectError, show,
} = require('./driverlib.js');

const connect = () => postgres({
  host: TARGET.host,
  port: TARGET.port,
  user: TARGET.user,
  pass: TARGET.password,
  database: TARGET.database,
  max: 1,
  onnotice: () => {},
});
const values = (rows) => rows.map((r) => Object.values(r).map(show).join(' ')).join(' ; ');

async function main() {
  const a = connect();
  const b = connect();
  await check('connect', async () => {
    const [r] = await a`SELECT current_setting('server_version') AS v`;
    return r.v;
  });
  await check('cleanup', async () => (await a`DELETE FROM items`) && 'done');
  await check('simple', async () => values(await a`SELECT 1 AS one, 'two' AS two`.simple()));
  await check('params', async () => values(await a`
    SELECT ${41}::int + 1 AS i, ${'héllo'}::text || '!' AS t,
      ${MOMENT}::timestamptz + interval '1 hour' AS ts, ${NUMBER}::numeric * 2 AS n,
      ${BYTES}::bytea AS y, ${null}::int IS NULL AS z, ${a.array(ARRAY)}::int[] || 4 AS arr`));
  await check('cached', async () => {
    const seen = [];
    for (let i = 0; i < 7; i += 1) seen.push((await a`SELECT ${i}::int * 10 AS v`)[0].v);
    return seen;
  });
  const count = async (c) => Number((await c`SELECT count(*) AS n FROM items`)[0].n);
  await check('commit', async () => {
    await a.begin((tx) => tx`INSERT INTO items VALUES (${1}), (${2})`);
    return `${await count(b)} rows seen by the other`;
  });
  await check('rollback', async () => {
    let inside;
    const rolled = await expectError(() => a.begin(async (tx) => {
      await tx`INSERT INTO items VALUES (3)`;
      inside = await count(tx);
      throw Object.assign(new Error('rolled back'), { code: 'app' });
    }));
    return `${rolled}: ${inside} inside, ${await count(a)} after, ${await count(b)} seen by the other`;
  });
  // postgres.js sends these three at once, on its one connection.
  await check('pipelined', async () => (await Promise.all([
    a`SELECT ${1}::int AS v`, a`SELECT ${'2'}::text AS v`, a`SELECT 3 AS v`,
  ])).map((r) => r[0].v));
  await check('pipelined other', async () => (await b`SELECT count(*)::int AS n FROM items`)[0].n);
  await check('error', () => expectError(() => a`SELECT 1 / ${0}::int`));
  await check('after error', async () => (await a`SELECT 2 AS v`)[0].v);
  await check('error in transaction', async () => {
    let first;
    let following;
    const ended = await expectError(() => b.begin(async (tx) => {
      first = await expectError(() => tx`SELECT 1 / 0`);
      following = await expectError(() => tx`SELECT 1`);
    }));
    return `${first} | ${following} | ${ended} | then ${(await b`SELECT 4 AS v`)[0].v}`;
  });
  await check('set timezone', async () => (await a`SET TIME ZONE 'Asia/Tokyo'`).command);
  const zone = async (c) => (await c`SHOW TimeZone`)[0].TimeZone;
  await check('timezone', () => zone(a));
  const rendered = async (c) => values(await c`SELECT ${MOMENT}::timestamptz::text AS t, ${MOMENT}::timestamptz AS ts`);
  await check('timezone rendered', () => rendered(a));
  for (const i of [1, 2, 3]) {
    if (i === 2) await check('b sets', async () => (await b`SET TIME ZONE 'America/New_York'`).command);
    await check(`interleave ${i}`, async () => `a=${await zone(a)} b=${await zone(b)}`);
  }
  await check('interleave statements', async () => {
    const seen = [];
    for (let i = 0; i < 5; i += 1) {
      seen.push((await a`SELECT ${i}::int + 100 AS v`)[0].v);
      seen.push((await b`SELECT ${i}::int - 100 AS v`)[0].v);
    }
    return seen;
  });
  await check('interleave rendered a', () => rendered(a));
  await check('interleave rendered b', () => rendered(b));
  await a.end();
  await b.end();
  say('close', 'ok');
  const c = connect();
  await check('after close', () => zone(c));
  await c.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
