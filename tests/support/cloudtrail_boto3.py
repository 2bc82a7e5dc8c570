"""boto3 against orgtrail's CloudTrail-compatible API: every trail action, its success and error
paths, paginators over one-item pages, and a check of every raw response against botocore's own
model of the operation's output (member names, types, enums, required members) and of every
error against the operation's modelled exceptions.

Input: environment variables set by tests/cloudtrail_clients.rs. Output: one JSON line (what was
checked) on stdout; any failure raises, so the exit status is non-zero with a traceback.
"""
import base64
import json
import os
import sys

import boto3
import botocore.config
import botocore.session
from botocore.exceptions import ClientError

ENDPOINT = os.environ["CT_ENDPOINT"]
BUCKET = os.environ["CT_BUCKET"]
MANAGEMENT = os.environ["CT_MANAGEMENT"]
MEMBER = os.environ["CT_MEMBER"]
GRPC_TRAIL_ARN = os.environ["CT_GRPC_TRAIL_ARN"]
HISTORY_EVENT_IDS = set(os.environ["CT_HISTORY_EVENT_IDS"].split(","))

# Exceptions any operation may answer with besides its modelled ones.
GENERIC_ERRORS = {"AccessDeniedException", "InvalidParameterException", "InvalidNextTokenException"}

checked = {"responses": 0, "errors": {}}


def check_shape(value, shape, path):
    """Raises unless `value` (raw JSON) fits `shape` exactly as botocore models it."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        for key, member in value.items():
            assert key in shape.members, f"{path}: {key!r} is not a member of {shape.name}"
            check_shape(member, shape.members[key], f"{path}.{key}")
        for required in shape.required_members:
            assert required in value, f"{path}: required member {required!r} missing"
    elif kind == "list":
        assert isinstance(value, list), f"{path}: expected a list, got {value!r}"
        for i, item in enumerate(value):
            check_shape(item, shape.member, f"{path}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: expected a map, got {value!r}"
        for key, item in value.items():
            check_shape(key, shape.key, f"{path} key")
            check_shape(item, shape.value, f"{path}[{key!r}]")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: expected a string, got {value!r}"
        if shape.enum:
            assert value in shape.enum, f"{path}: {value!r} is not one of {shape.enum}"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: expected a boolean, got {value!r}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer"
    elif kind in ("double", "float", "timestamp"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: expected a number"
    elif kind == "blob":
        base64.b64decode(value, validate=True)
    else:
        raise AssertionError(f"{path}: unexpected shape type {kind}")


def check_the_checker():
    """The shape check refuses what botocore would not model: an unknown member, a wrong type."""
    output = botocore.session.get_session().get_service_model("cloudtrail").operation_model("GetTrail").output_shape
    check_shape({"Trail": {"Name": "t", "IsMultiRegionTrail": True, "HomeRegion": "us-east-1"}}, output, "ok")
    for wrong in ({"Trail": {"Bogus": 1}}, {"Trail": {"IsMultiRegionTrail": "true"}}, {"Trail": []}):
        try:
            check_shape(wrong, output, "wrong")
        except AssertionError:
            continue
        raise AssertionError(f"the shape check let {wrong} through")


check_the_checker()


def after_call(http_response, parsed, model, **_):
    """Every answer: a successful body fits the output shape; an error names a modelled exception."""
    body = json.loads(http_response.content or b"{}")
    if http_response.status_code == 200:
        if model.output_shape is not None:
            check_shape(body, model.output_shape, model.name)
        checked["responses"] += 1
    else:
        code = body["__type"].split("#")[-1]
        assert isinstance(body.get("message"), str) and body["message"], f"{model.name}: {body}"
        modelled = {shape.name for shape in model.error_shapes}
        assert code in modelled or code in GENERIC_ERRORS, f"{model.name} answered {code}, not in {sorted(modelled)}"
        checked["errors"][code] = checked["errors"].get(code, 0) + 1


def client(key, region="us-east-1"):
    session = boto3.session.Session(
        aws_access_key_id=os.environ[f"CT_{key}_KEY_ID"],
        aws_secret_access_key=os.environ[f"CT_{key}_SECRET"],
        region_name=region,
    )
    c = session.client(
        "cloudtrail",
        endpoint_url=ENDPOINT,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    c.meta.events.register("after-call.cloudtrail", after_call)
    return c


def expect(code, call, **params):
    try:
        answer = call(**params)
    except ClientError as error:
        got = error.response["Error"]["Code"]
        assert got == code, f"{call.__name__}({params}): expected {code}, got {got}: {error}"
        return error.response["Error"]["Message"]
    raise AssertionError(f"{call.__name__}({params}) succeeded, expected {code}: {answer}")


def trail_arn(account, name, region="us-east-1"):
    return f"arn:aws:cloudtrail:{region}:{account}:trail/{name}"


admin = client("ADMIN")
admin_eu = client("ADMIN", "eu-west-1")
member = client("MEMBER")
auditor = client("AUDITOR")

# --- CreateTrail: CloudTrail's defaults, the caller's account, every bad-input exception ---------
created = admin.create_trail(Name="b3-trail", S3BucketName=BUCKET, TagsList=[{"Key": "team", "Value": "sec"}])
arn = trail_arn(MANAGEMENT, "b3-trail")
assert created["TrailARN"] == arn, created
assert created["IsMultiRegionTrail"] is False and created["IncludeGlobalServiceEvents"] is True, created
assert created["LogFileValidationEnabled"] is False and created["IsOrganizationTrail"] is False, created
expect("TrailAlreadyExistsException", admin.create_trail, Name="b3-trail", S3BucketName=BUCKET)
expect("InvalidTrailNameException", admin.create_trail, Name="b3..bad", S3BucketName=BUCKET)
expect("InvalidTrailNameException", admin.create_trail, Name="192.168.5.4", S3BucketName=BUCKET)
message = expect(
    "InvalidParameterCombinationException",
    admin.create_trail,
    Name="b3-combo",
    S3BucketName=BUCKET,
    IsMultiRegionTrail=True,
    IncludeGlobalServiceEvents=False,
)
assert message.startswith("IncludeGlobalServiceEvents: "), message
expect("InvalidS3BucketNameException", admin.create_trail, Name="b3-x", S3BucketName="Bad_Bucket")
expect("InvalidS3PrefixException", admin.create_trail, Name="b3-x", S3BucketName=BUCKET, S3KeyPrefix="/p/")
expect("InvalidSnsTopicNameException", admin.create_trail, Name="b3-x", S3BucketName=BUCKET, SnsTopicName="no spaces")
expect("InvalidKmsKeyIdException", admin.create_trail, Name="b3-x", S3BucketName=BUCKET, KmsKeyId="not a key")
expect(
    "InvalidCloudWatchLogsLogGroupArnException",
    admin.create_trail,
    Name="b3-x",
    S3BucketName=BUCKET,
    CloudWatchLogsLogGroupArn="not-an-arn",
    CloudWatchLogsRoleArn=f"arn:aws:iam::{MANAGEMENT}:role/cwl",
)
expect(
    "InvalidTagParameterException",
    admin.create_trail,
    Name="b3-x",
    S3BucketName=BUCKET,
    TagsList=[{"Key": "aws:reserved", "Value": "x"}],
)
expect(
    "NotOrganizationMasterAccountException",
    member.create_trail,
    Name="b3-org",
    S3BucketName=BUCKET,
    IsOrganizationTrail=True,
)
expect("AccessDeniedException", auditor.create_trail, Name="b3-auditor", S3BucketName=BUCKET)
member_trail = member.create_trail(Name="b3-member", S3BucketName=BUCKET)
member_arn = trail_arn(MEMBER, "b3-member")
assert member_trail["TrailARN"] == member_arn, member_trail
org = admin.create_trail(
    Name="b3-org", S3BucketName=BUCKET, IsOrganizationTrail=True, IsMultiRegionTrail=True, SnsTopicName="org-topic"
)
org_arn = trail_arn(MANAGEMENT, "b3-org")
assert org["IsOrganizationTrail"] is True and org["SnsTopicARN"] == f"arn:aws:sns:us-east-1:{MANAGEMENT}:org-topic", org

# --- reads: GetTrail, DescribeTrails, GetTrailStatus, ListTrails over one-trail pages -----------
assert admin.get_trail(Name="b3-trail")["Trail"] == admin.get_trail(Name=arn)["Trail"]
assert admin.get_trail(Name=GRPC_TRAIL_ARN)["Trail"]["TrailARN"] == GRPC_TRAIL_ARN, "a gRPC trail is visible"
expect("TrailNotFoundException", admin.get_trail, Name="no-such-trail")
expect("CloudTrailARNInvalidException", admin.get_trail, Name="arn:aws:cloudtrail:us-east-1:1:nope")
expect("TrailNotFoundException", member.get_trail, Name=GRPC_TRAIL_ARN.replace(MEMBER, "444444444444"))
described = admin.describe_trails(trailNameList=[arn, org_arn])["trailList"]
assert sorted(t["Name"] for t in described) == ["b3-org", "b3-trail"], described
assert member.get_trail(Name=org_arn)["Trail"]["IsOrganizationTrail"] is True, "members read org trails by ARN"
pages = list(admin.get_paginator("list_trails").paginate())
assert all(len(page["Trails"]) == 1 for page in pages), pages
listed = {t["TrailARN"] for page in pages for t in page["Trails"]}
assert {arn, member_arn, org_arn, GRPC_TRAIL_ARN} <= listed, listed
assert len(pages) == len(listed) >= 4
first = admin.list_trails()
assert len(first["Trails"]) == 1 and first["NextToken"], first
assert admin.list_trails(NextToken=first["NextToken"])["Trails"] != first["Trails"]
expect("InvalidNextTokenException", admin.list_trails, NextToken="not-a-token")
member_listed = {t["TrailARN"] for page in member.get_paginator("list_trails").paginate() for t in page["Trails"]}
assert member_arn in member_listed and arn not in member_listed, member_listed
status = admin.get_trail_status(Name=arn)
assert status["IsLogging"] is False, "CloudTrail's trails log from StartLogging on"
admin.start_logging(Name=arn)
assert admin.get_trail_status(Name=arn)["IsLogging"] is True

# --- UpdateTrail, StartLogging, StopLogging: home region, authorization ------------------------
updated = admin.update_trail(Name="b3-trail", IsMultiRegionTrail=True, EnableLogFileValidation=True, S3KeyPrefix="p")
assert updated["IsMultiRegionTrail"] and updated["LogFileValidationEnabled"] and updated["S3KeyPrefix"] == "p", updated
assert admin.get_trail(Name=arn)["Trail"]["HomeRegion"] == "us-east-1"
expect("InvalidHomeRegionException", admin_eu.update_trail, Name=arn, S3KeyPrefix="q")
expect("TrailNotFoundException", admin.update_trail, Name="no-such-trail", S3KeyPrefix="q")
expect("InvalidParameterCombinationException", admin.update_trail, Name=arn, IncludeGlobalServiceEvents=False)
expect("NotOrganizationMasterAccountException", member.update_trail, Name="b3-member", IsOrganizationTrail=True)
expect("NotOrganizationMasterAccountException", member.stop_logging, Name=org_arn)
expect("AccessDeniedException", auditor.stop_logging, Name=arn)
admin.stop_logging(Name=arn)
stopped = admin.get_trail_status(Name=arn)
assert stopped["IsLogging"] is False and "StopLoggingTime" in stopped, stopped
admin.start_logging(Name="b3-trail")
assert admin.get_trail_status(Name=arn)["IsLogging"] is True
expect("TrailNotFoundException", admin.start_logging, Name="no-such-trail")
expect("InvalidHomeRegionException", admin_eu.stop_logging, Name=arn)

# --- event selectors: basic and advanced read back exactly, bad ones refused -------------------
basic = [
    {
        "ReadWriteType": "WriteOnly",
        "IncludeManagementEvents": True,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::bucket-a/", "arn:aws:s3:::bucket-b/logs"]}],
        "ExcludeManagementEventSources": ["kms.amazonaws.com"],
    }
]
put = admin.put_event_selectors(TrailName="b3-trail", EventSelectors=basic)
assert put["EventSelectors"] == basic and "AdvancedEventSelectors" not in put, put
got = admin.get_event_selectors(TrailName=arn)
assert got == {"TrailARN": arn, "EventSelectors": basic, "ResponseMetadata": got["ResponseMetadata"]}, got
advanced = [
    {
        "Name": "S3 writes",
        "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::bucket-a/"], "NotEndsWith": [".tmp"]},
            {"Field": "readOnly", "Equals": ["false"]},
        ],
    },
    {"Name": "management", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
]
admin.put_event_selectors(TrailName=arn, AdvancedEventSelectors=advanced)
got = admin.get_event_selectors(TrailName="b3-trail")
assert got["AdvancedEventSelectors"] == advanced and "EventSelectors" not in got, got
default = admin.get_event_selectors(TrailName=member_arn)["EventSelectors"]
assert default == [
    {"ReadWriteType": "All", "IncludeManagementEvents": True, "DataResources": [], "ExcludeManagementEventSources": []}
], default
message = expect(
    "InvalidEventSelectorsException", admin.put_event_selectors, TrailName=arn, EventSelectors=[{"ReadWriteType": "Sometimes"}]
)
assert message.startswith("EventSelectors[0].ReadWriteType: "), message
expect("InvalidEventSelectorsException", admin.put_event_selectors, TrailName=arn, EventSelectors=basic, AdvancedEventSelectors=advanced)
expect(
    "InvalidEventSelectorsException",
    admin.put_event_selectors,
    TrailName=arn,
    AdvancedEventSelectors=[{"FieldSelectors": [{"Field": "noSuchField", "Equals": ["x"]}]}],
)
assert admin.get_event_selectors(TrailName=arn)["AdvancedEventSelectors"] == advanced, "a refused put changes nothing"
expect("TrailNotFoundException", admin.put_event_selectors, TrailName="no-such-trail", EventSelectors=basic)
expect("TrailNotFoundException", admin.get_event_selectors, TrailName="no-such-trail")
expect("InvalidHomeRegionException", admin_eu.put_event_selectors, TrailName=arn, EventSelectors=basic)
expect("NotOrganizationMasterAccountException", member.put_event_selectors, TrailName=org_arn, EventSelectors=basic)

# --- Insights selectors ---------------------------------------------------------------------------
expect("InsightNotEnabledException", admin.get_insight_selectors, TrailName=arn)
insights = [
    {"InsightType": "ApiCallRateInsight", "EventCategories": ["Management"]},
    {"InsightType": "ApiErrorRateInsight", "EventCategories": ["Management"]},
]
put = admin.put_insight_selectors(TrailName=arn, InsightSelectors=insights)
assert put["InsightSelectors"] == insights and put["TrailARN"] == arn, put
assert admin.get_insight_selectors(TrailName="b3-trail")["InsightSelectors"] == insights
trail = admin.get_trail(Name=arn)["Trail"]
assert trail["HasInsightSelectors"] and trail["HasCustomEventSelectors"], trail
expect("InvalidInsightSelectorsException", admin.put_insight_selectors, TrailName=arn, InsightSelectors=[{"InsightType": "Bogus"}])
expect("TrailNotFoundException", admin.put_insight_selectors, TrailName="no-such-trail", InsightSelectors=insights)
expect(
    "InvalidParameterCombinationException",
    admin.put_insight_selectors,
    TrailName=arn,
    InsightSelectors=insights,
    InsightsDestination="arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/x",
)
admin.put_insight_selectors(TrailName=arn, InsightSelectors=[])
expect("InsightNotEnabledException", admin.get_insight_selectors, TrailName=arn)

# --- tags: AddTags, RemoveTags, ListTags over one-trail pages -------------------------------------
admin.add_tags(ResourceId=arn, TagsList=[{"Key": "a", "Value": "1"}, {"Key": "b"}])
admin.add_tags(ResourceId=member_arn, TagsList=[{"Key": "owner", "Value": "member"}])


def tags_of(caller, ids):
    pages = list(caller.get_paginator("list_tags").paginate(ResourceIdList=ids))
    assert all(len(page["ResourceTagList"]) == 1 for page in pages), pages
    return {entry["ResourceId"]: entry["TagsList"] for page in pages for entry in page["ResourceTagList"]}


assert tags_of(admin, [arn, member_arn]) == {
    arn: [{"Key": "team", "Value": "sec"}, {"Key": "a", "Value": "1"}, {"Key": "b"}],
    member_arn: [{"Key": "owner", "Value": "member"}],
}
admin.add_tags(ResourceId=arn, TagsList=[{"Key": "a", "Value": "2"}])
admin.remove_tags(ResourceId=arn, TagsList=[{"Key": "team"}, {"Key": "b"}])
assert tags_of(admin, [arn]) == {arn: [{"Key": "a", "Value": "2"}]}
expect("ResourceNotFoundException", admin.add_tags, ResourceId=trail_arn(MANAGEMENT, "nope"), TagsList=[{"Key": "k", "Value": "v"}])
expect("ResourceNotFoundException", admin.list_tags, ResourceIdList=[trail_arn(MANAGEMENT, "nope")])
expect("CloudTrailARNInvalidException", admin.add_tags, ResourceId="arn:aws:s3:::bucket", TagsList=[{"Key": "k", "Value": "v"}])
expect("InvalidTagParameterException", admin.add_tags, ResourceId=arn, TagsList=[{"Key": "aws:x", "Value": "v"}])
expect("InvalidTagParameterException", admin.add_tags, ResourceId=arn, TagsList=[{"Key": "k", "Value": "v" * 257}])
expect(
    "TagsLimitExceededException",
    admin.add_tags,
    ResourceId=arn,
    TagsList=[{"Key": f"k{i}", "Value": "v"} for i in range(60)],
)
assert tags_of(admin, [arn]) == {arn: [{"Key": "a", "Value": "2"}]}, "refused tags change nothing"
expect("InvalidTokenException", admin.list_tags, ResourceIdList=[arn], NextToken="not-a-token")
expect("NotOrganizationMasterAccountException", member.add_tags, ResourceId=org_arn, TagsList=[{"Key": "k", "Value": "v"}])
expect("AccessDeniedException", auditor.remove_tags, ResourceId=arn, TagsList=[{"Key": "a"}])

# --- a bare name is the caller's own trail where another account's has the same name --------------
admin.create_trail(Name="twin", S3BucketName=BUCKET)
member.create_trail(Name="twin", S3BucketName=BUCKET)
own_twin, member_twin = trail_arn(MANAGEMENT, "twin"), trail_arn(MEMBER, "twin")
assert admin.get_trail(Name="twin")["Trail"]["TrailARN"] == own_twin
assert member.get_trail(Name="twin")["Trail"]["TrailARN"] == member_twin
admin.start_logging(Name="twin")
assert admin.get_trail_status(Name=own_twin)["IsLogging"] is True
assert admin.get_trail_status(Name=member_twin)["IsLogging"] is False, "the member's twin is untouched"
admin.add_tags(ResourceId="twin", TagsList=[{"Key": "owner", "Value": "management"}])
assert tags_of(admin, [own_twin, member_twin]) == {own_twin: [{"Key": "owner", "Value": "management"}], member_twin: []}
expect("InvalidTrailNameException", admin_eu.get_trail, Name="twin")  # two visible, neither homed here
admin.delete_trail(Name="twin")
member.delete_trail(Name="twin")

# --- limits: five trails per account and region ---------------------------------------------------
extra = []
while True:
    name = f"b3-extra-{len(extra)}"
    try:
        member.create_trail(Name=name, S3BucketName=BUCKET)
        extra.append(name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "MaximumNumberOfTrailsExceededException", error
        break
    assert len(extra) < 10, "no trail limit"
assert len(extra) == 4, extra  # b3-member plus four
for name in extra:
    member.delete_trail(Name=name)

# --- DeleteTrail ---------------------------------------------------------------------------------
expect("InvalidHomeRegionException", admin_eu.delete_trail, Name=arn)
expect("NotOrganizationMasterAccountException", member.delete_trail, Name=org_arn)
admin.delete_trail(Name="b3-trail")
expect("TrailNotFoundException", admin.get_trail, Name=arn)
expect("TrailNotFoundException", admin.delete_trail, Name="b3-trail")
expect("TrailNotFoundException", admin.get_trail_status, Name=arn)

# --- the rest of the surface parses too ------------------------------------------------------------
admin.describe_trails()
admin.describe_trails(includeShadowTrails=False)
admin.list_public_keys()
pages = list(admin.get_paginator("lookup_events").paginate(PaginationConfig={"PageSize": 1}))
assert all(len(page["Events"]) <= 1 for page in pages), pages
looked_up = [event for page in pages for event in page["Events"]]
assert {event["EventId"] for event in looked_up} == HISTORY_EVENT_IDS, looked_up
assert all(json.loads(event["CloudTrailEvent"])["eventID"] == event["EventId"] for event in looked_up)
member_pages = member.get_paginator("lookup_events").paginate(
    LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateUser"}], PaginationConfig={"PageSize": 1}
)
assert sum(len(page["Events"]) for page in member_pages) == len(HISTORY_EVENT_IDS), "the member's own events"

print(json.dumps(checked, sort_keys=True))
sys.stdout.flush()
