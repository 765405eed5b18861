// KeyboardEvent -> X keysym. Printable characters map by Unicode (Latin-1 directly, the rest
// as 0x01000000 + code point); named keys by this table. The desktop side finds the keycode.
'use strict';
const NAMED_KEYSYMS = {
  Backspace: 0xff08, Tab: 0xff09, Enter: 0xff0d, Escape: 0xff1b, Delete: 0xffff, Insert: 0xff63,
  Home: 0xff50, End: 0xff57, PageUp: 0xff55, PageDown: 0xff56,
  ArrowLeft: 0xff51, ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54,
  Shift: 0xffe1, Control: 0xffe3, Alt: 0xffe9, AltGraph: 0xfe03, Meta: 0xffe7, OS: 0xffeb,
  CapsLock: 0xffe5, NumLock: 0xff7f, ScrollLock: 0xff14, Pause: 0xff13, PrintScreen: 0xff61,
  ContextMenu: 0xff67,
  F1: 0xffbe, F2: 0xffbf, F3: 0xffc0, F4: 0xffc1, F5: 0xffc2, F6: 0xffc3,
  F7: 0xffc4, F8: 0xffc5, F9: 0xffc6, F10: 0xffc7, F11: 0xffc8, F12: 0xffc9,
};
const RIGHT_SIDE = { Shift: 0xffe2, Control: 0xffe4, Alt: 0xffea, Meta: 0xffe8 };

function keysymFor(event) {
  if (event.location === 2 && RIGHT_SIDE[event.key]) return RIGHT_SIDE[event.key];
  if (NAMED_KEYSYMS[event.key] !== undefined) return NAMED_KEYSYMS[event.key];
  const chars = [...event.key];
  if (chars.length === 1) {
    const code = chars[0].codePointAt(0);
    return code < 0x100 ? code : 0x01000000 + code;
  }
  return null;
}

// The XKB layout of the browser's keyboard, from what its keys type (the Keyboard Map API:
// KeyboardEvent.code -> character): the first signature that fits; "us" otherwise.
const LAYOUT_SIGNATURES = [
  ['de', { KeyZ: 'y', Minus: 'ß' }], ['ch', { KeyZ: 'y', Minus: "'" }], ['cz', { KeyZ: 'y', Digit2: 'ě' }],
  ['hu', { KeyZ: 'y', Digit0: 'ö' }], ['fr', { KeyQ: 'a', KeyA: 'q', Digit2: 'é' }], ['be', { KeyQ: 'a', KeyA: 'q' }],
  ['es', { Semicolon: 'ñ' }], ['it', { Semicolon: 'ò' }], ['pt', { Semicolon: 'ç' }],
  ['no', { Semicolon: 'ø', Quote: 'æ' }], ['dk', { Semicolon: 'æ', Quote: 'ø' }], ['se', { Semicolon: 'ö', Quote: 'ä' }],
  ['ru', { KeyQ: 'й' }], ['ua', { KeyS: 'і' }], ['jp', { Equal: '^', BracketLeft: '@' }], ['gb', { Backslash: '#' }],
];

function layoutOf(map) {
  for (const [name, keys] of LAYOUT_SIGNATURES) {
    if (Object.entries(keys).every(([code, char]) => map.get(code) === char)) return name;
  }
  return 'us';
}
