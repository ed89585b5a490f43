// QR Code (ISO/IEC 18004, Model 2) for the link page: the share link drawn
// in the browser, key included, so no server or third party ever sees it.
//
// Byte mode only (a link is ASCII; any text is encoded as UTF-8), versions
// 1 to 40, and one of the four error correction levels (the link page uses
// M: it restores 15 % of the symbol, enough for a phone camera pointed at a
// screen, while keeping the modules large). The mask is chosen by the
// standard's penalty rules. Importing this module touches no DOM, so Node
// tests the encoder; `qrSvg` builds the picture with DOM calls only (no
// markup is parsed: the pages stay under Trusted Types).

/** The error correction levels, each with its two format bits. */
const LEVELS = { L: 1, M: 0, Q: 3, H: 2 };
const LEVEL_INDEX = { L: 0, M: 1, Q: 2, H: 3 };

// Per version (index 1..40) and level (L, M, Q, H): error correction
// codewords per block, and the number of blocks (ISO/IEC 18004, table 9).
// prettier-ignore
const ECC_PER_BLOCK = [
  [0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  [0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28],
  [0, 13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  [0, 17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
];
// prettier-ignore
const BLOCKS = [
  [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25],
  [0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49],
  [0, 1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68],
  [0, 1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81],
];

/** Raised when the text does not fit in a version-40 symbol at the level. */
export class QrTooLong extends Error {
  constructor(bytes, level) {
    super(`${bytes} bytes do not fit in a QR code at level ${level}`);
    this.name = 'QrTooLong';
  }
}

// ---------------------------------------------------------------------------
// Reed–Solomon over GF(256), the field of the standard (x^8+x^4+x^3+x^2+1).

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let v = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = v;
    LOG[v] = i;
    v <<= 1;
    if (v & 0x100) v ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
}

const gfMul = (a, b) => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);

/** The generator polynomial of degree `n`, highest coefficient (1) left out. */
function generator(n) {
  // (x - a^0)(x - a^1)...(x - a^(n-1)); in GF(2^8) minus is plus.
  let poly = [1];
  for (let i = 0; i < n; i++) {
    const next = new Array(poly.length + 1).fill(0);
    for (let j = 0; j < poly.length; j++) {
      next[j] ^= poly[j];
      next[j + 1] ^= gfMul(poly[j], EXP[i]);
    }
    poly = next;
  }
  return poly.slice(1);
}

/** The `n` error correction codewords of `data` (the remainder of division). */
export function reedSolomon(data, n) {
  const gen = generator(n);
  const rem = new Array(n).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < n; i++) rem[i] ^= gfMul(gen[i], factor);
  }
  return rem;
}

// ---------------------------------------------------------------------------
// The symbol's fixed parts

/** Centres of the alignment patterns of a version, on each axis. */
export function alignmentCentres(version) {
  if (version === 1) return [];
  const count = Math.floor(version / 7) + 2;
  const last = version * 4 + 10;
  // Evenly spaced back from the last, the step even (version 32 is the
  // standard's one exception to the rounding).
  const step = version === 32 ? 26 : Math.ceil((last - 6) / (count - 1) / 2) * 2;
  const centres = [6];
  for (let i = count - 2; i >= 0; i--) centres.push(last - i * step);
  return centres;
}

/** A square grid of modules, with a second grid marking the fixed parts. */
class Grid {
  constructor(version) {
    this.version = version;
    this.size = version * 4 + 17;
    this.dark = new Uint8Array(this.size * this.size);
    this.fixed = new Uint8Array(this.size * this.size);
  }

  get(x, y) {
    return this.dark[y * this.size + x];
  }

  set(x, y, dark, fixed = true) {
    this.dark[y * this.size + x] = dark ? 1 : 0;
    if (fixed) this.fixed[y * this.size + x] = 1;
  }

  isFixed(x, y) {
    return this.fixed[y * this.size + x] === 1;
  }
}

function drawFinder(grid, cx, cy) {
  // A 7×7 ring, ring, 3×3 core, and the light separator around it.
  for (let dy = -4; dy <= 4; dy++) {
    for (let dx = -4; dx <= 4; dx++) {
      const x = cx + dx;
      const y = cy + dy;
      if (x < 0 || y < 0 || x >= grid.size || y >= grid.size) continue;
      const ring = Math.max(Math.abs(dx), Math.abs(dy));
      grid.set(x, y, ring !== 2 && ring !== 4);
    }
  }
}

function drawAlignment(grid, cx, cy) {
  for (let dy = -2; dy <= 2; dy++) {
    for (let dx = -2; dx <= 2; dx++) {
      grid.set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
    }
  }
}

/** The 15 format bits: level and mask, BCH(15,5) protected, then masked. */
export function formatBits(level, mask) {
  const data = (LEVELS[level] << 3) | mask;
  let rem = data << 10;
  for (let bit = 14; bit >= 10; bit--) {
    if (rem & (1 << bit)) rem ^= 0x537 << (bit - 10);
  }
  return ((data << 10) | rem) ^ 0x5412;
}

/** The 18 version bits (versions 7 and up): BCH(18,6) protected. */
export function versionBits(version) {
  let rem = version << 12;
  for (let bit = 17; bit >= 12; bit--) {
    if (rem & (1 << bit)) rem ^= 0x1f25 << (bit - 12);
  }
  return (version << 12) | rem;
}

function drawFormat(grid, level, mask) {
  const bits = formatBits(level, mask);
  const bit = (i) => (bits >> i) & 1;
  const s = grid.size;
  // Around the top-left finder: down column 8, then left along row 8
  // (skipping the timing patterns).
  for (let i = 0; i <= 5; i++) grid.set(8, i, bit(i));
  grid.set(8, 7, bit(6));
  grid.set(8, 8, bit(7));
  grid.set(7, 8, bit(8));
  for (let i = 9; i < 15; i++) grid.set(14 - i, 8, bit(i));
  // The copy: along row 8 under the top-right finder, then up column 8
  // beside the bottom-left one; and the module that is always dark.
  for (let i = 0; i < 8; i++) grid.set(s - 1 - i, 8, bit(i));
  for (let i = 8; i < 15; i++) grid.set(8, s - 15 + i, bit(i));
  grid.set(8, s - 8, 1);
}

function drawVersion(grid) {
  if (grid.version < 7) return;
  const bits = versionBits(grid.version);
  for (let i = 0; i < 18; i++) {
    const dark = (bits >> i) & 1;
    const a = grid.size - 11 + (i % 3);
    const b = Math.floor(i / 3);
    grid.set(a, b, dark);
    grid.set(b, a, dark);
  }
}

/** A grid with every fixed part drawn (format bits as placeholders). */
function functionGrid(version) {
  const grid = new Grid(version);
  const s = grid.size;
  for (let i = 0; i < s; i++) {
    grid.set(6, i, i % 2 === 0);
    grid.set(i, 6, i % 2 === 0);
  }
  drawFinder(grid, 3, 3);
  drawFinder(grid, s - 4, 3);
  drawFinder(grid, 3, s - 4);
  const centres = alignmentCentres(version);
  for (const cx of centres) {
    for (const cy of centres) {
      // Not where an alignment pattern would cover a finder.
      const nearFinder =
        (cx === 6 && cy === 6) || (cx === 6 && cy === s - 7) || (cx === s - 7 && cy === 6);
      if (!nearFinder) drawAlignment(grid, cx, cy);
    }
  }
  drawFormat(grid, 'M', 0);
  drawVersion(grid);
  return grid;
}

/** How many 8-bit codewords a version holds in all (data and correction). */
export function totalCodewords(version) {
  const grid = functionGrid(version);
  let free = 0;
  for (const f of grid.fixed) if (f === 0) free++;
  return Math.floor(free / 8);
}

/** How many data codewords a version holds at a level. */
export function dataCodewords(version, level) {
  const l = LEVEL_INDEX[level];
  return totalCodewords(version) - ECC_PER_BLOCK[l][version] * BLOCKS[l][version];
}

/** How many bytes of text a version holds at a level (byte mode). */
export function byteCapacity(version, level) {
  const countBits = version < 10 ? 8 : 16;
  return Math.floor((dataCodewords(version, level) * 8 - 4 - countBits) / 8);
}

// ---------------------------------------------------------------------------
// Data

function dataBits(bytes, version, capacityCodewords) {
  const bits = [];
  const push = (value, length) => {
    for (let i = length - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  push(0b0100, 4); // byte mode
  push(bytes.length, version < 10 ? 8 : 16);
  for (const b of bytes) push(b, 8);
  const capacityBits = capacityCodewords * 8;
  push(0, Math.min(4, capacityBits - bits.length)); // terminator
  push(0, (8 - (bits.length % 8)) % 8);
  const codewords = [];
  for (let i = 0; i < bits.length; i += 8) {
    let v = 0;
    for (let j = 0; j < 8; j++) v = (v << 1) | bits[i + j];
    codewords.push(v);
  }
  for (let pad = 0xec; codewords.length < capacityCodewords; pad ^= 0xec ^ 0x11) {
    codewords.push(pad);
  }
  return codewords;
}

/** Splits into blocks, adds each block's correction, and interleaves. */
function interleave(data, version, level) {
  const l = LEVEL_INDEX[level];
  const blockCount = BLOCKS[l][version];
  const eccLength = ECC_PER_BLOCK[l][version];
  const total = totalCodewords(version);
  const shortBlocks = blockCount - (total % blockCount);
  const shortLength = Math.floor(total / blockCount) - eccLength;
  const blocks = [];
  let at = 0;
  for (let i = 0; i < blockCount; i++) {
    const length = shortLength + (i < shortBlocks ? 0 : 1);
    const part = data.slice(at, at + length);
    at += length;
    blocks.push({ data: part, ecc: reedSolomon(part, eccLength) });
  }
  const out = [];
  for (let i = 0; i <= shortLength; i++) {
    for (const b of blocks) if (i < b.data.length) out.push(b.data[i]);
  }
  for (let i = 0; i < eccLength; i++) {
    for (const b of blocks) out.push(b.ecc[i]);
  }
  return out;
}

/** Places the codewords in the standard's two-column zigzag. */
function placeCodewords(grid, codewords) {
  const s = grid.size;
  let bit = 0;
  const total = codewords.length * 8;
  for (let right = s - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5; // the vertical timing column is skipped
    const upward = ((s - 1 - right) >> 1) % 2 === 0;
    for (let step = 0; step < s; step++) {
      const y = upward ? s - 1 - step : step;
      for (const x of [right, right - 1]) {
        if (grid.isFixed(x, y)) continue;
        const dark = bit < total ? (codewords[bit >> 3] >> (7 - (bit & 7))) & 1 : 0;
        grid.set(x, y, dark, false);
        bit++;
      }
    }
  }
}

const MASKS = [
  (x, y) => (x + y) % 2 === 0,
  (x, y) => y % 2 === 0,
  (x) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

function applyMask(grid, mask) {
  const fn = MASKS[mask];
  for (let y = 0; y < grid.size; y++) {
    for (let x = 0; x < grid.size; x++) {
      if (!grid.isFixed(x, y) && fn(x, y)) grid.dark[y * grid.size + x] ^= 1;
    }
  }
}

/** The standard's penalty score of a finished symbol (lower is better). */
export function penalty(dark, size) {
  let score = 0;
  const at = (x, y) => dark[y * size + x];
  const lines = [
    (i, j) => at(j, i), // rows
    (i, j) => at(i, j), // columns
  ];
  const finderLike = [1, 0, 1, 1, 1, 0, 1];
  for (const line of lines) {
    for (let i = 0; i < size; i++) {
      // Rule 1: runs of five or more modules of one colour.
      let run = 1;
      for (let j = 1; j <= size; j++) {
        if (j < size && line(i, j) === line(i, j - 1)) {
          run++;
        } else {
          if (run >= 5) score += run - 2;
          run = 1;
        }
      }
      // Rule 3: a finder-like 1:1:3:1:1 with four light modules on a side
      // (the light margin outside the symbol counts as light).
      const m = (j) => (j < 0 || j >= size ? 0 : line(i, j));
      for (let j = 0; j + 7 <= size; j++) {
        let match = true;
        for (let k = 0; k < 7 && match; k++) match = m(j + k) === finderLike[k];
        if (!match) continue;
        const lightBefore = [1, 2, 3, 4].every((k) => m(j - k) === 0);
        const lightAfter = [7, 8, 9, 10].every((k) => m(j + k) === 0);
        if (lightBefore || lightAfter) score += 40;
      }
    }
  }
  // Rule 2: 2×2 blocks of one colour.
  for (let y = 0; y + 1 < size; y++) {
    for (let x = 0; x + 1 < size; x++) {
      const c = at(x, y);
      if (c === at(x + 1, y) && c === at(x, y + 1) && c === at(x + 1, y + 1)) score += 3;
    }
  }
  // Rule 4: the share of dark modules away from one half, by 5 % steps.
  let darkCount = 0;
  for (const d of dark) darkCount += d;
  const percent = (darkCount * 100) / (size * size);
  score += Math.floor(Math.abs(percent - 50) / 5) * 10;
  return score;
}

/**
 * Encodes `text` (as UTF-8, byte mode) in the smallest version that holds it
 * at `level` ('L', 'M', 'Q' or 'H'), with the mask of lowest penalty.
 *
 * @returns {{version: number, size: number, mask: number, level: string,
 *   dark: Uint8Array}} `dark[y * size + x]` is 1 for a dark module.
 * @throws {QrTooLong} when the text does not fit in version 40.
 */
export function encodeQr(text, level = 'M') {
  if (!(level in LEVELS)) throw new TypeError(`unknown QR level ${level}`);
  const bytes = new TextEncoder().encode(text);
  let version = 1;
  while (version <= 40 && byteCapacity(version, level) < bytes.length) version++;
  if (version > 40) throw new QrTooLong(bytes.length, level);
  const codewords = interleave(
    dataBits(bytes, version, dataCodewords(version, level)),
    version,
    level,
  );
  const base = functionGrid(version);
  placeCodewords(base, codewords);
  let best = null;
  for (let mask = 0; mask < 8; mask++) {
    const grid = new Grid(version);
    grid.dark.set(base.dark);
    grid.fixed.set(base.fixed);
    applyMask(grid, mask);
    drawFormat(grid, level, mask);
    const score = penalty(grid.dark, grid.size);
    if (best === null || score < best.score) best = { score, mask, grid };
  }
  return {
    version,
    size: best.grid.size,
    mask: best.mask,
    level,
    dark: best.grid.dark,
  };
}

// ---------------------------------------------------------------------------
// Drawing

/**
 * The SVG path (`d`) of the dark modules, one unit per module, shifted by
 * `border` modules of quiet zone.
 */
export function qrPath(qr, border = 4) {
  const parts = [];
  for (let y = 0; y < qr.size; y++) {
    for (let x = 0; x < qr.size; x++) {
      if (qr.dark[y * qr.size + x]) parts.push(`M${x + border} ${y + border}h1v1h-1z`);
    }
  }
  return parts.join('');
}

/**
 * An `<svg>` element of `text` as a QR code: black on white whatever the
 * colour scheme, with a quiet zone of four modules, labelled `label` for
 * assistive technology (the label, not the text, is what a screen reader
 * says: the link holds the key and must never be read aloud).
 */
export function qrSvg(doc, text, label, level = 'M') {
  const qr = encodeQr(text, level);
  const border = 4;
  const extent = qr.size + border * 2;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = doc.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${extent} ${extent}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('class', 'qr');
  const background = doc.createElementNS(NS, 'rect');
  background.setAttribute('width', String(extent));
  background.setAttribute('height', String(extent));
  background.setAttribute('fill', '#ffffff');
  const modules = doc.createElementNS(NS, 'path');
  modules.setAttribute('d', qrPath(qr, border));
  modules.setAttribute('fill', '#000000');
  svg.append(background, modules);
  return svg;
}
