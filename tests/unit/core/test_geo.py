from hypothesis import given
from hypothesis import strategies as st

from engine.core.geo import bounding_box, haversine_km


def test_new_york_to_los_angeles_is_about_3940_km():
    assert 3930 < haversine_km(40.7128, -74.0060, 34.0522, -118.2437) < 3950


def test_distance_is_symmetric_and_zero_to_itself():
    assert haversine_km(10, 20, 10, 20) == 0
    assert haversine_km(1, 2, 3, 4) == haversine_km(3, 4, 1, 2)


lats = st.floats(min_value=-89.0, max_value=89.0)
lons = st.floats(min_value=-180.0, max_value=180.0)


@given(lat=lats, lon=lons, radius=st.floats(min_value=0.1, max_value=2000), lat2=lats, lon2=lons)
def test_the_bounding_box_holds_every_point_within_the_radius(lat, lon, radius, lat2, lon2):
    if haversine_km(lat, lon, lat2, lon2) <= radius:
        min_lat, max_lat, min_lon, max_lon = bounding_box(lat, lon, radius)
        assert min_lat - 1e-9 <= lat2 <= max_lat + 1e-9
        assert min_lon - 1e-9 <= lon2 <= max_lon + 1e-9
