// The at-rest scheme of the shared cache: keys are HMACs under the deployment
// secret, values open only with the token, under the key they were written to.
import t from 'tap';
import { open, seal, sharedKey, type SharedEntry } from '../../src/introspection/sealed-entry.js';

const SECRET = Buffer.from('k'.repeat(32));
const TOKEN = 'tokenAliceAAAAAAAAAAAAAAAAAAAAAA';
const ENTRY: SharedEntry = { active: true, claims: { sub: 'alice', scope: 'read' }, tokenExpiresAt: 2_000_000, expiresAt: 1_000_000 };
const NAME = `authz:${sharedKey(SECRET, 'one', TOKEN)}`;

t.test('keys: hex HMAC, depending on secret, endpoint and token, never containing the token', async (t) => {
  const key = sharedKey(SECRET, 'one', TOKEN);
  t.match(key, /^[0-9a-f]{64}$/);
  t.equal(sharedKey(SECRET, 'one', TOKEN), key, 'stable');
  t.not(sharedKey(Buffer.from('x'.repeat(32)), 'one', TOKEN), key, 'another secret');
  t.not(sharedKey(SECRET, 'two', TOKEN), key, 'another endpoint');
  t.not(sharedKey(SECRET, 'one', `${TOKEN}x`), key, 'another token');
  t.not(sharedKey(SECRET, 'on', `e\0${TOKEN}`), key, 'the separator keeps endpoint and token apart');
});

t.test('round trip of active and inactive entries', async (t) => {
  const sealed = seal(ENTRY, 'one', TOKEN, NAME);
  const opened = open(sealed, 'one', TOKEN, NAME);
  t.same(opened, ENTRY);
  t.equal(Object.getPrototypeOf((opened as { claims: object }).claims), null, 'claims come back null-prototype');
  t.same(open(seal({ active: false, expiresAt: 5 }, 'one', TOKEN, NAME), 'one', TOKEN, NAME), { active: false, expiresAt: 5 });
  t.same(
    open(seal({ active: true, claims: {}, tokenExpiresAt: null, expiresAt: 5 }, 'one', TOKEN, NAME), 'one', TOKEN, NAME),
    { active: true, claims: {}, tokenExpiresAt: null, expiresAt: 5 },
  );
});

t.test('nothing readable: neither token nor claims in the sealed value; nonces differ', async (t) => {
  const a = seal(ENTRY, 'one', TOKEN, NAME);
  const b = seal(ENTRY, 'one', TOKEN, NAME);
  t.not(a.toString('hex'), b.toString('hex'), 'a fresh nonce each time');
  for (const text of [TOKEN, 'alice', 'read', 'sub']) {
    t.notOk(a.includes(Buffer.from(text)), `no ${text}`);
  }
});

t.test('anything else opens to nothing', async (t) => {
  const sealed = seal(ENTRY, 'one', TOKEN, NAME);
  t.equal(open(sealed, 'one', `${TOKEN}x`, NAME), undefined, 'wrong token');
  t.equal(open(sealed, 'two', TOKEN, NAME), undefined, 'wrong endpoint');
  t.equal(open(sealed, 'one', TOKEN, `${NAME}0`), undefined, 'moved to another key (AAD)');
  for (const at of [0, 1, 13, sealed.length - 1]) {
    const tampered = Buffer.from(sealed);
    tampered[at]! ^= 1;
    t.equal(open(tampered, 'one', TOKEN, NAME), undefined, `byte ${at} flipped`);
  }
  t.equal(open(sealed.subarray(0, 20), 'one', TOKEN, NAME), undefined, 'truncated');
  t.equal(open(Buffer.alloc(0), 'one', TOKEN, NAME), undefined, 'empty');
});

t.test('authenticated but unexpected contents are refused', async (t) => {
  const odd = (value: unknown) => seal(value as SharedEntry, 'one', TOKEN, NAME);
  t.equal(open(odd(null), 'one', TOKEN, NAME), undefined);
  t.equal(open(odd({ active: true, expiresAt: 'x' }), 'one', TOKEN, NAME), undefined);
  t.equal(open(odd({ active: true, expiresAt: 1 }), 'one', TOKEN, NAME), undefined, 'no claims');
  t.equal(open(odd({ active: 'yes', claims: {}, expiresAt: 1 }), 'one', TOKEN, NAME), undefined);
  const proto = open(seal(JSON.parse('{"active":true,"claims":{"__proto__":{"x":1}},"expiresAt":1}'), 'one', TOKEN, NAME), 'one', TOKEN, NAME);
  t.equal((proto as { claims: Record<string, unknown> }).claims.x, undefined, '__proto__ stays a plain key');
});
