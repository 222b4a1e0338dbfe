#include "ticketd/auth/digest.h"

#include <gtest/gtest.h>

namespace ticketd::auth {
namespace {

TEST(Digest, Sha256KnownValues) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(to_hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Digest, HmacSha256Rfc4231) {
  // RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
  EXPECT_EQ(to_hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(to_hex(hmac_sha256(std::string(131, '\xaa'),
                               "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  // An empty key is a valid HMAC key.
  EXPECT_EQ(to_hex(hmac_sha256("", "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(Digest, ConstantTimeEquality) {
  Digest a = sha256("a"), b = sha256("b");
  EXPECT_TRUE(equal_constant_time(a, a));
  EXPECT_FALSE(equal_constant_time(a, b));
  Digest c = a;
  c[31] ^= 1;  // differs only in the last byte
  EXPECT_FALSE(equal_constant_time(a, c));
  EXPECT_TRUE(equal_constant_time(std::string_view("secret"), std::string_view("secret")));
  EXPECT_FALSE(equal_constant_time(std::string_view("secret"), std::string_view("secreT")));
  EXPECT_FALSE(equal_constant_time(std::string_view("secret"), std::string_view("secre")));
  EXPECT_TRUE(equal_constant_time(std::string_view(), std::string_view()));
}

TEST(Digest, HexRoundTripAndRefusals) {
  Digest d = sha256("x");
  Digest back{};
  ASSERT_TRUE(parse_hex_digest(to_hex(d), &back));
  EXPECT_EQ(back, d);
  std::string upper = to_hex(d);
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  ASSERT_TRUE(parse_hex_digest(upper, &back));
  EXPECT_EQ(back, d);
  EXPECT_FALSE(parse_hex_digest(to_hex(d).substr(1), &back));
  EXPECT_FALSE(parse_hex_digest(to_hex(d) + "0", &back));
  std::string bad = to_hex(d);
  bad[10] = 'g';
  EXPECT_FALSE(parse_hex_digest(bad, &back));
  EXPECT_EQ(back, d);  // untouched on refusal
}

TEST(Digest, RandomBytesDiffer) {
  Digest a{}, b{};
  random_bytes(a.data(), a.size());
  random_bytes(b.data(), b.size());
  EXPECT_NE(a, b);
  EXPECT_NE(a, Digest{});
}

TEST(Digest, WipeEmptiesTheSecret) {
  std::string s = "a secret that is longer than the small-string buffer";
  wipe(s);
  EXPECT_TRUE(s.empty());
  std::string e;
  wipe(e);
  EXPECT_TRUE(e.empty());
}

}  // namespace
}  // namespace ticketd::auth
