// Why: data/tokenizer.cpp must give exactly the ids of the reference BPE implementations. This
// script gives tests/test_data_tokenizer.cpp an independent encoder (gpt-tokenizer, a JavaScript
// port of OpenAI's tiktoken with its own regex engine and merge loop) and a Hugging Face
// tokenizer.json made from that encoder's own vocabulary, so the two can be compared on real text.
//
//   node bpe_reference.js tokenizer-json ENCODING OUT.json   write a tokenizer.json for ENCODING
//   node bpe_reference.js encode ENCODING TEXT_FILE OUT.ids  encode a UTF-8 file (int32 LE ids)
//
// ENCODING: r50k_base (GPT-2's vocabulary, written as GPT-2's tokenizer.json: ByteLevel
// pre-tokenizer, "a b" merges) or cl100k_base (written as Llama-3's: Split with the Llama-3 regex +
// ByteLevel, [a, b] merges, ignore_merges). tiktoken ranks merges by the rank of the merged token;
// a tokenizer.json lists pairs, so each token's pair is found as the two pieces that BPE with only
// the lower ranks leaves of its bytes (one merge per token, in rank order).
'use strict';
const fs = require('fs');

const ENCODINGS = {
  r50k_base: { style: 'gpt2', special: { '<|endoftext|>': 50256 } },
  cl100k_base: {
    style: 'llama3',
    special: {
      '<|endoftext|>': 100257, '<|fim_prefix|>': 100258, '<|fim_middle|>': 100259, '<|fim_suffix|>': 100260,
      '<|im_start|>': 100264, '<|im_end|>': 100265, '<|im_sep|>': 100266, '<|endofprompt|>': 100276,
    },
  },
};
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" +
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function usage() {
  console.error('usage: node bpe_reference.js tokenizer-json ENCODING OUT.json | encode ENCODING TEXT_FILE OUT.ids');
  process.exit(2);
}

function encodingOf(name) {
  const e = ENCODINGS[name];
  if (!e) usage();
  return e;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for U+0100 onwards.
function byteAlphabet() {
  const map = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    map[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return map;
}

// rank -> token bytes, as a 'latin1' string (one char per byte) for use as a map key.
function tokenBytes(name) {
  const ranks = require(`gpt-tokenizer/bpeRanks/${name}`).default;
  const out = new Array(ranks.length);
  ranks.forEach((v, rank) => {
    out[rank] = (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v)).toString('latin1');
  });
  return out;
}

// The pair that token `rank` is merged from: BPE of its bytes with only the ranks below it.
function pairOf(bytes, rank, rankOf) {
  let parts = bytes.split('');
  for (;;) {
    let best = -1, bestRank = rank;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = rankOf.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < bestRank) { best = i; bestRank = r; }
    }
    if (best < 0) break;
    parts.splice(best, 2, parts[best] + parts[best + 1]);
  }
  if (parts.length !== 2) throw new Error(`token ${rank} is not one merge of lower-ranked tokens`);
  return parts;
}

function tokenizerJson(name, outPath) {
  const enc = encodingOf(name);
  const tokens = tokenBytes(name);
  const rankOf = new Map();
  tokens.forEach((t, r) => rankOf.set(t, r));
  const alpha = byteAlphabet();
  const spell = (latin1) => Array.from(latin1, (c) => alpha[c.charCodeAt(0)]).join('');
  const vocab = {};
  const merges = [];
  tokens.forEach((t, r) => {
    vocab[spell(t)] = r;
    if (t.length < 2) return;
    const [a, b] = pairOf(t, r, rankOf);
    merges.push(enc.style === 'gpt2' ? `${spell(a)} ${spell(b)}` : [spell(a), spell(b)]);
  });
  const added = Object.entries(enc.special).map(([content, id]) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const byteLevel = (useRegex) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
  const pre = enc.style === 'gpt2' ? byteLevel(true) : {
    type: 'Sequence',
    pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_REGEX }, behavior: 'Isolated', invert: false }, byteLevel(false)],
  };
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: pre,
    post_processor: byteLevel(true), decoder: byteLevel(true),
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: enc.style === 'llama3', vocab, merges,
    },
  };
  fs.writeFileSync(outPath, JSON.stringify(json));
}

// Special tokens are split out here, leftmost-longest, and only the text between them goes to the
// package (whose own special-token search only matches at the start of the text in 4.0.0).
function encodeFile(name, textPath, outPath) {
  const enc = encodingOf(name);
  const api = require(`gpt-tokenizer/encoding/${name}`);
  const text = fs.readFileSync(textPath, 'utf8');
  const specials = Object.keys(enc.special).sort((a, b) => b.length - a.length);
  const ids = [];
  const append = (part) => { for (const id of api.encode(part)) ids.push(id); };
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const s = text.startsWith('<|', i) ? specials.find((sp) => text.startsWith(sp, i)) : undefined;
    if (s === undefined) continue;
    if (i > start) append(text.slice(start, i));
    ids.push(enc.special[s]);
    start = i + s.length;
    i = start - 1;
  }
  if (start < text.length) append(text.slice(start));
  fs.writeFileSync(outPath, Buffer.from(Int32Array.from(ids).buffer));
}

const [cmd, name, a, b] = process.argv.slice(2);
if (cmd === 'tokenizer-json' && name && a) tokenizerJson(name, a);
else if (cmd === 'encode' && name && a && b) encodeFile(name, a, b);
else usage();
