// The strict protobuf JSON reader behind the Envoy and Istio checks, on a
// small message that has every shape it handles.
import t from 'tap';
import protobuf from 'protobufjs';
import { ProtoJsonReader, jsonName } from './lib/proto-json.js';

const PROTO = `syntax = "proto3";
package demo;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
enum Color { RED = 0; GREEN = 1; }
message Inner { string label = 1; }
message All {
  int32 small = 1;
  uint64 big = 2;
  double ratio = 3;
  bool flag = 4;
  bytes blob = 5;
  Color color = 6;
  repeated string names = 7;
  map<string, Inner> by_name = 8;
  map<uint32, string> by_number = 9;
  google.protobuf.Duration wait = 10;
  google.protobuf.Timestamp at = 11;
  google.protobuf.UInt32Value count = 12;
  google.protobuf.Struct extra = 13;
  google.protobuf.Value anything = 14;
  google.protobuf.Any packed = 15;
  google.protobuf.FieldMask mask = 16;
  oneof choice { string text = 17; Inner inner = 18; }
  optional string maybe = 19;
  string old = 20 [deprecated = true];
  string mTLS_mode = 21;
}`;

// protobufjs bundles the well-known types; load them before the text that imports them.
const root = new protobuf.Root().loadSync(
  ['any', 'duration', 'field_mask', 'struct', 'timestamp', 'wrappers'].map((f) => `google/protobuf/${f}.proto`),
  { keepCase: true },
);
protobuf.parse(PROTO, root, { keepCase: true });
root.resolveAll();
const All = root.lookupType('demo.All');
const reader = new ProtoJsonReader(root);
const problems = (json: unknown) => reader.read(All, json).problems;

t.test('JSON names are protoc\'s', async (t) => {
  t.equal(jsonName(All.fields.by_name!), 'byName');
  t.equal(jsonName(All.fields.mTLS_mode!), 'mTLSMode');
});

t.test('every shape, valid, round-trips through protobufjs', async (t) => {
  const json = {
    small: -5,
    big: '18446744073709551615',
    ratio: 'NaN',
    flag: true,
    blob: 'aGVsbG8=',
    color: 'GREEN',
    names: ['a', 'b'],
    byName: { x: { label: 'one' } },
    by_number: { '7': 'seven' },
    wait: '-1.5s',
    at: '2026-01-02T03:04:05.5Z',
    count: 3,
    extra: { a: [1, 'two', null, { b: false }] },
    anything: null,
    packed: { '@type': 'type.googleapis.com/demo.Inner', label: 'in' },
    mask: 'byName,mTLSMode',
    inner: { label: 'i' },
    maybe: '',
    mTLSMode: 'strict',
  };
  const { value, problems: found } = reader.read(All, json);
  t.same(found, []);
  const back = All.toObject(All.decode(All.encode(All.fromObject(value)).finish()), { enums: String, longs: String, bytes: String }) as any;
  t.equal(back.big, '18446744073709551615');
  t.equal(back.blob, 'aGVsbG8=');
  t.same(back.wait, { seconds: '-1', nanos: -500000000 });
  t.equal(back.count.value, 3);
  t.equal(back.by_name.x.label, 'one');
  t.equal(back.by_number['7'], 'seven');
  // protobufjs' bundled struct.proto names Value's fields in camelCase.
  t.equal(back.extra.fields.a.listValue.values[3].structValue.fields.b.boolValue, false);
  t.same(back.mask.paths, ['by_name', 'm_t_l_s_mode']);
  t.equal(back.inner.label, 'i');
  const Inner = root.lookupType('demo.Inner');
  t.equal(back.packed.type_url, 'type.googleapis.com/demo.Inner');
  t.equal((Inner.decode(Buffer.from(back.packed.value, 'base64')) as any).label, 'in');
});

t.test('Any with a well-known type takes "value"', async (t) => {
  t.same(problems({ packed: { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '2s' } }), []);
  t.match(problems({ packed: { '@type': 'type.googleapis.com/google.protobuf.Duration', seconds: 2 } }), [/seconds: unknown field/]);
  t.match(problems({ packed: { label: 'no type' } }), [/"@type" must be a type URL/]);
  t.match(problems({ packed: { '@type': 'type.googleapis.com/demo.Inner', labels: 'x' } }), [/All\.packed<Inner>\.labels: unknown field of demo\.Inner/]);
});

t.test('mistakes, each reported with its path', async (t) => {
  t.match(problems({ smal: 1 }), [/^All\.smal: unknown field of demo\.All$/]);
  t.match(problems({ small: 2 ** 31 }), [/small: 2147483648 is out of range for int32/]);
  t.match(problems({ small: 1.5 }), [/small: expected an integer/]);
  t.match(problems({ big: -1 }), [/big: -1 is out of range for uint64/]);
  t.match(problems({ ratio: 'lots' }), [/ratio: expected a number/]);
  t.match(problems({ flag: 'true' }), [/flag: expected true or false/]);
  t.match(problems({ blob: 'not base64!' }), [/blob: expected base64/]);
  t.match(problems({ color: 'BLUE' }), [/color: "BLUE" is not a value of demo\.Color \(RED, GREEN\)/]);
  t.match(problems({ names: 'a' }), [/names: expected a list/]);
  t.match(problems({ names: ['a', 1] }), [/names\[1\]: expected a string, got number 1 \(quote it\)/]);
  t.match(problems({ byName: { x: { lable: 'one' } } }), [/byName\.x\.lable: unknown field of demo\.Inner/]);
  t.match(problems({ by_number: { seven: 'x' } }), [/by_number: map key: expected an integer/]);
  t.match(problems({ wait: '1m' }), [/wait: expected a duration/]);
  t.match(problems({ wait: '1.0000000001s' }), [/wait: expected a duration/]);
  t.match(problems({ at: 'yesterday' }), [/at: expected an RFC 3339 timestamp/]);
  t.match(problems({ count: -1 }), [/count: -1 is out of range for uint32/]);
  t.match(problems({ extra: [1] }), [/extra: expected an object \(google\.protobuf\.Struct\)/]);
  t.match(problems({ mask: ['a'] }), [/mask: expected a string/]);
  t.match(problems({ text: 'a', inner: {} }), [/text and inner are one of choice: set only one/]);
  t.match(problems({ old: 'x' }), [/old: deprecated field/]);
  t.match(problems({ inner: 'x' }), [/inner: expected an object \(demo\.Inner\), got string "x"/]);
  t.match(problems([]), [/expected an object \(demo\.All\), got a list/]);
  t.same(problems({ small: null, inner: null }), [], 'null means "not set"');
  t.same(problems({ small: '12' }), [], 'integers may be strings');
});

t.test('an unknown type name is a programming error', async (t) => {
  t.throws(() => reader.read('demo.Missing', {}), /unknown message type demo\.Missing/);
});
