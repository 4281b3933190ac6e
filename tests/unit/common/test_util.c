#include "common/err.h"
#include "common/util.h"
#include "tests/unit/harness.h"

#include <errno.h>

TEST(test_util_parse_size_units_and_errors)
{
	uint64_t v;

	CHECK_EQ(kura_parse_size("4096", &v), 0);
	CHECK_EQ(v, 4096);
	CHECK_EQ(kura_parse_size("512K", &v), 0);
	CHECK_EQ(v, 512 << 10);
	CHECK_EQ(kura_parse_size("10G", &v), 0);
	CHECK_EQ(v, 10ull << 30);
	CHECK_EQ(kura_parse_size("1TiB", &v), 0);
	CHECK_EQ(v, 1ull << 40);
	CHECK_EQ(kura_parse_size("", &v), -EINVAL);
	CHECK_EQ(kura_parse_size("-1G", &v), -EINVAL);
	CHECK_EQ(kura_parse_size("12Q", &v), -EINVAL);
	CHECK_EQ(kura_parse_size("1G2", &v), -EINVAL);
	CHECK_EQ(kura_parse_size("99999999999P", &v), -ERANGE);
}

TEST(test_util_strerror_knows_kura_codes)
{
	CHECK(strstr(kura_strerror(KURA_E_FORMAT), "newer"));
	CHECK(strstr(kura_strerror(-ENOSPC), "space"));
}

TEST(test_parse_duration)
{
	uint64_t ms = 0;

	CHECK_EQ(kura_parse_duration("30", &ms), 0);
	CHECK_EQ(ms, 30000);
	CHECK_EQ(kura_parse_duration("30s", &ms), 0);
	CHECK_EQ(ms, 30000);
	CHECK_EQ(kura_parse_duration("10m", &ms), 0);
	CHECK_EQ(ms, 600000);
	CHECK_EQ(kura_parse_duration("2h", &ms), 0);
	CHECK_EQ(ms, 7200000);
	CHECK_EQ(kura_parse_duration("7d", &ms), 0);
	CHECK_EQ(ms, 7 * 86400000ull);
	CHECK_EQ(kura_parse_duration("366d", &ms), 0);
	ms = 5;
	CHECK_EQ(kura_parse_duration("367d", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("0", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("-1s", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("1w", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("5ss", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration(NULL, &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("18446744073709551615d", &ms), -EINVAL);
	CHECK_EQ(kura_parse_duration("99999999999999999999999", &ms), -EINVAL);
	CHECK_EQ(ms, 5); /* untouched on error */
}
