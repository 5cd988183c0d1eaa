// What a replica remembers of evictions: entries written before one (plus the
// clock skew allowed) are refused, for as long as such an entry could live;
// when full, it forgets by refusing more, never less.
import t from 'tap';
import { EvictionJournal } from '../../src/introspection/eviction-journal.js';

const T = 1_700_000_000_000;
const journal = (maxKeys?: number) => new EvictionJournal({ retention: 60_000, skew: 2000, maxKeys });

t.test('nothing evicted: everything admitted', async (t) => {
  const j = journal();
  t.ok(j.admits('a', T));
  t.ok(j.admits('a', 0));
});

t.test('a key: entries written before its eviction, or within the skew after, are refused', async (t) => {
  const j = journal();
  j.evicted(['a', 'b'], T);
  t.notOk(j.admits('a', T - 1), 'written before');
  t.notOk(j.admits('a', T + 2000), 'written within the skew after (its writer may run ahead)');
  t.ok(j.admits('a', T + 2001), 'written after');
  t.notOk(j.admits('b', T - 1));
  t.ok(j.admits('c', T - 1), 'other keys are not concerned');
});

t.test('an eviction of all refuses every key written before it', async (t) => {
  const j = journal();
  j.evicted(['a'], T + 10_000);
  j.evictedAll(T);
  t.notOk(j.admits('x', T));
  t.ok(j.admits('x', T + 2001));
  t.notOk(j.admits('a', T + 5000), 'a later eviction of one key still counts');
  j.evictedAll(T - 50_000);
  t.notOk(j.admits('x', T), 'the watermark never goes back');
});

t.test('a key evicted again keeps the later time', async (t) => {
  const j = journal();
  j.evicted(['a'], T + 5000);
  j.evicted(['a'], T);
  t.notOk(j.admits('a', T + 4000));
  t.equal(j.size, 1);
});

t.test('times are forgotten once no entry written before them can be alive', async (t) => {
  const j = journal();
  j.evicted(['old'], T);
  j.evicted(['young'], T + 30_000);
  j.evicted(['now'], T + 60_000 + 2000);
  t.equal(j.size, 3, 'retention + skew: still kept');
  j.evicted(['later'], T + 60_000 + 2001);
  t.equal(j.size, 3, 'the oldest went');
  t.ok(j.admits('old', T - 1), 'forgotten: an entry written before it has expired by now');
  t.notOk(j.admits('young', T + 29_000));
});

t.test('full: the oldest key goes and the watermark rises to its time (more refused, never less)', async (t) => {
  const j = journal(2);
  j.evicted(['a'], T);
  j.evicted(['b'], T + 10);
  j.evicted(['c'], T + 20);
  t.equal(j.size, 2);
  t.notOk(j.admits('a', T - 1), 'a is still refused, through the watermark');
  t.notOk(j.admits('unrelated', T - 1), 'and so is everything written before a was evicted');
  t.ok(j.admits('unrelated', T + 2001));
  t.notOk(j.admits('c', T + 19));
  // Many keys at once: bounded all the same.
  j.evicted(Array.from({ length: 1000 }, (_, i) => `k${i}`), T + 100);
  t.equal(j.size, 2);
  t.notOk(j.admits('k0', T + 99));
});

t.test('an eviction of all drops the key times it covers', async (t) => {
  const j = journal();
  j.evicted(['a', 'b'], T);
  j.evicted(['c'], T + 100);
  j.evictedAll(T + 50);
  t.equal(j.size, 1);
  t.notOk(j.admits('c', T + 99));
});

t.test('options are checked', async (t) => {
  t.throws(() => new EvictionJournal({ retention: -1, skew: 0 }), TypeError);
  t.throws(() => new EvictionJournal({ retention: 0, skew: Number.NaN }), TypeError);
  t.throws(() => new EvictionJournal({ retention: 0, skew: 0, maxKeys: 0 }), /maxKeys/);
});
