// What the Node driver checks of proxy_drivers.rs share: the target they are given (JSON in
// the first argument) and the printing of one line per check, `name: value`, or
// `name: FAILED ...` when a check met an error it did not expect (the direct run must never
// print one).

const TARGET = JSON.parse(process.argv[2]);

// The values every driver sends as parameters.
const MOMENT = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
const NUMBER = '12.345';
const BYTES = Buffer.from([0, 1, 255]);
const ARRAY = [1, 2, 3];

function say(name, value) {
  console.log(`${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`);
}

/** Runs the async `fn` and prints its value, or the error it raised. */
async function check(name, fn) {
  try {
    say(name, await fn());
  } catch (e) {
    say(name, `FAILED ${e.code || ''} ${e.message}`.replace(/\n/g, ' '));
  }
}

/** Runs `fn`, which must fail: its SQLSTATE and message. */
async function expectError(fn) {
  try {
    await fn();
  } catch (e) {
    return `${e.code} ${e.message}`;
  }
  return 'no error';
}

/** A value as text that does not depend on the driver's object printing. */
function show(v) {
  if (v instanceof Date) return v.toISOString();
  if (Buffer.isBuffer(v)) return `\\x${v.toString('hex')}`;
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  return JSON.stringify(v);
}

module.exports = { TARGET, MOMENT, NUMBER, BYTES, ARRAY, say, check, expectError, show };
