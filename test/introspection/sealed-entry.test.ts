// The at-rest scheme of the shared cache: keys are HMACs under a key derived
// from the deployment secret; values open only with the token, under the key
// they were written to, and only with that secret: holding the token is not
// enough to read or make one.
import t from 'tap';
import { createCipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { open, seal, sharedKey, sharedKeys, type SharedEntry } from '../../src/introspection/sealed-entry.js';

const SECRET = 'k'.repeat(32);
const KEYS = sharedKeys(SECRET);
const OTHER = sharedKeys('x'.repeat(32));
const TOKEN = 'tokenAliceAAAAAAAAAAAAAAAAAAAAAA';
const ENTRY: SharedEntry = {
  active: true,
  claims: { sub: 'alice', scope: 'read' },
  tokenExpiresAt: 2_000_000,
  expiresAt: 1_000_000,
  writtenAt: 900_000,
};
const NAME = `authz:${sharedKey(KEYS, 'one', TOKEN)}`;

t.test('keys: hex HMAC, depending on secret, endpoint and token, never containing the token', async (t) => {
  const key = sharedKey(KEYS, 'one', TOKEN);
  t.match(key, /^[0-9a-f]{64}$/);
  t.equal(sharedKey(sharedKeys(SECRET), 'one', TOKEN), key, 'stable: replicas with the same secret agree');
  t.not(sharedKey(OTHER, 'one', TOKEN), key, 'another secret');
  t.not(sharedKey(KEYS, 'two', TOKEN), key, 'another endpoint');
  t.not(sharedKey(KEYS, 'one', `${TOKEN}x`), key, 'another token');
  t.not(sharedKey(KEYS, 'on', `e\0${TOKEN}`), key, 'the separator keeps endpoint and token apart');
});

t.test('one derived key per use, none of them the secret', async (t) => {
  const all = [KEYS.name, KEYS.entry, KEYS.fingerprint].map((key) => key.toString('hex'));
  t.equal(new Set([...all, Buffer.from(SECRET).toString('hex')]).size, 4);
  for (const key of [KEYS.name, KEYS.entry, KEYS.fingerprint]) t.equal(key.length, 32);
  t.not(OTHER.fingerprint.toString('hex'), KEYS.fingerprint.toString('hex'));
});

t.test('round trip of active and inactive entries', async (t) => {
  const sealed = seal(ENTRY, KEYS, 'one', TOKEN, NAME);
  const opened = open(sealed, KEYS, 'one', TOKEN, NAME);
  t.same(opened, ENTRY);
  t.equal(Object.getPrototypeOf((opened as { claims: object }).claims), null, 'claims come back null-prototype');
  const inactive: SharedEntry = { active: false, expiresAt: 5, writtenAt: 4 };
  t.same(open(seal(inactive, KEYS, 'one', TOKEN, NAME), KEYS, 'one', TOKEN, NAME), inactive);
  const bare: SharedEntry = { active: true, claims: {}, tokenExpiresAt: null, expiresAt: 5, writtenAt: 4 };
  t.same(open(seal(bare, KEYS, 'one', TOKEN, NAME), KEYS, 'one', TOKEN, NAME), bare);
});

t.test('nothing readable: neither token nor claims in the sealed value; nonces differ', async (t) => {
  const a = seal(ENTRY, KEYS, 'one', TOKEN, NAME);
  const b = seal(ENTRY, KEYS, 'one', TOKEN, NAME);
  t.not(a.toString('hex'), b.toString('hex'), 'a fresh nonce each time');
  t.equal(a[0], 2, 'version 2');
  for (const text of [TOKEN, 'alice', 'read', 'sub']) {
    t.notOk(a.includes(Buffer.from(text)), `no ${text}`);
  }
});

t.test('anything else opens to nothing', async (t) => {
  const sealed = seal(ENTRY, KEYS, 'one', TOKEN, NAME);
  t.equal(open(sealed, KEYS, 'one', `${TOKEN}x`, NAME), undefined, 'wrong token');
  t.equal(open(sealed, KEYS, 'two', TOKEN, NAME), undefined, 'wrong endpoint');
  t.equal(open(sealed, KEYS, 'one', TOKEN, `${NAME}0`), undefined, 'moved to another key (AAD)');
  t.equal(open(sealed, OTHER, 'one', TOKEN, NAME), undefined, 'another deployment secret');
  for (const at of [0, 1, 13, sealed.length - 1]) {
    const tampered = Buffer.from(sealed);
    tampered[at]! ^= 1;
    t.equal(open(tampered, KEYS, 'one', TOKEN, NAME), undefined, `byte ${at} flipped`);
  }
  t.equal(open(sealed.subarray(0, 20), KEYS, 'one', TOKEN, NAME), undefined, 'truncated');
  t.equal(open(Buffer.alloc(0), KEYS, 'one', TOKEN, NAME), undefined, 'empty');
});

t.test('a value keyed by the token and endpoint alone (the version 1 scheme) never opens', async (t) => {
  for (const version of [1, 2]) {
    const key = Buffer.from(hkdfSync('sha256', TOKEN, 'one', `envoy-introspection-authz l2 entry v${version}`, 32));
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    cipher.setAAD(Buffer.from(NAME));
    const body = Buffer.concat([cipher.update(JSON.stringify(ENTRY)), cipher.final()]);
    const value = Buffer.concat([Buffer.from([version]), nonce, body, cipher.getAuthTag()]);
    t.equal(open(value, KEYS, 'one', TOKEN, NAME), undefined, `version byte ${version}`);
  }
});

t.test('authenticated but unexpected contents are refused', async (t) => {
  const odd = (value: unknown) => seal(value as SharedEntry, KEYS, 'one', TOKEN, NAME);
  const read = (value: Buffer) => open(value, KEYS, 'one', TOKEN, NAME);
  t.equal(read(odd(null)), undefined);
  t.equal(read(odd({ active: true, expiresAt: 'x', writtenAt: 1 })), undefined);
  t.equal(read(odd({ active: true, expiresAt: 1, writtenAt: 1 })), undefined, 'no claims');
  t.equal(read(odd({ active: 'yes', claims: {}, expiresAt: 1, writtenAt: 1 })), undefined);
  t.equal(read(odd({ active: false, expiresAt: 1 })), undefined, 'no writtenAt: cannot be weighed against evictions');
  const proto = read(odd(JSON.parse('{"active":true,"claims":{"__proto__":{"x":1}},"expiresAt":1,"writtenAt":1}')));
  t.equal((proto as { claims: Record<string, unknown> }).claims.x, undefined, '__proto__ stays a plain key');
});
