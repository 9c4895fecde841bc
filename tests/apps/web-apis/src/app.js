// Libraries from npm that need the Web APIs, bundled as they are published.
import { nanoid, customAlphabet } from "nanoid";
import { v4 as uuidv4, v5 as uuidv5, v7 as uuidv7 } from "uuid";
import { sha256 } from "@noble/hashes/sha2.js";
import { blake3 } from "@noble/hashes/blake3.js";
import { bytesToHex, randomBytes, utf8ToBytes } from "@noble/hashes/utils.js";

export function ids(request) {
  const text = request.query ? new URLSearchParams(request.query).get("text") ?? "abc" : "abc";
  return {
    body: {
      nanoid: nanoid(),
      digits: customAlphabet("0123456789", 12)(),
      uuid4: uuidv4(),
      uuid5: uuidv5(text, uuidv5.URL),
      uuid7: uuidv7(),
      sha256: bytesToHex(sha256(utf8ToBytes(text))),
      blake3: bytesToHex(blake3(utf8ToBytes(text))),
      random: bytesToHex(randomBytes(16)),
      roundTrip: new TextDecoder().decode(new TextEncoder().encode(text)),
      base64: btoa(unescape(encodeURIComponent(text))),
      cloned: structuredClone({ text, at: new Date(0) }).at.toISOString(),
    },
  };
}
