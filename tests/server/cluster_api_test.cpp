// The hash slot a -MOVED names and CLUSTER KEYSLOT answers: Redis Cluster's CRC16 (XMODEM)
// of the key or of its first non-empty {hash tag}, modulo 16384 (values from redis-py's
// redis.crc.key_slot and Redis's cluster specification).
#include "../../src/server/cluster_api.h"

#include <gtest/gtest.h>

namespace ticketd::server {
namespace {

TEST(KeyHashSlot, MatchesRedisCluster) {
  EXPECT_EQ(key_hash_slot("123456789"), 0x31C3 % 16384);  // the CRC16-XMODEM check value
  EXPECT_EQ(key_hash_slot("foo"), 12182);
  EXPECT_EQ(key_hash_slot("orders"), 105);
  EXPECT_EQ(key_hash_slot("default"), 5718);
  EXPECT_EQ(default_slot(), 5718);
  EXPECT_EQ(key_hash_slot(""), 0);
}

TEST(KeyHashSlot, HashTags) {
  EXPECT_EQ(key_hash_slot("{user1000}.following"), key_hash_slot("user1000"));
  EXPECT_EQ(key_hash_slot("{user1000}.followers"), key_hash_slot("user1000"));
  EXPECT_EQ(key_hash_slot("{}x"), 10595);          // an empty tag: the whole key is hashed
  EXPECT_EQ(key_hash_slot("a{}b{c}"), 7353);       // only the first '{' counts
  EXPECT_EQ(key_hash_slot("x{abc"), key_hash_slot("x{abc"));  // no '}': the whole key
  EXPECT_EQ(key_hash_slot("{a}{b}"), key_hash_slot("a"));
}

}  // namespace
}  // namespace ticketd::server
